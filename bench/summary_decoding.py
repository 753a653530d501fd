"""How the demo's summaries should be decoded, chosen on selection articles (issue #18).

    python -m bench.summary_decoding --home HOME [--articles 20] [--ngrams 0 3 4] [--json FILE]

HOME is the LLM4ALL_HOME of a finished `make demo`. Its promoted student and the teacher write
greedy summaries (`distill.rouge_max_new_tokens` tokens at most) of held-out articles, once per
`--ngrams` value n: 0 is plain greedy, n > 0 forbids repeating any n tokens within a summary
(models.generate.NoRepeatInContinuation; the article may be copied). A small student loops
("the police said the police said ..."), and greedy decoding cannot leave a loop on its own.

1. Choose: the n with the highest student ROUGE-L on `--articles` **selection** articles (the
   split that keep-best uses; no reported figure comes from it). Ties go to the smaller n.
2. Report: plain greedy and the chosen n on the same number of **test** articles, the ones the
   demo reports (`distill.rouge_pairs`), which step 1 never saw.

Prints ROUGE-L (rouge-score), empty and looping summaries (tasks.curate.quality.
repetition_reason) per split, n and model, and the student/teacher ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

DATASET = "cnn_dailymail"


def non_negative(text: str) -> int:
    """An --ngrams value: 0 (plain greedy) or an n-gram size."""
    n = int(text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"{n} is not >= 0")
    return n


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--home", type=Path, required=True, help="a demo home (LLM4ALL_HOME)")
    p.add_argument("--dataset", default=DATASET)
    p.add_argument("--config", default="configs/demo.yaml", help="the config the home ran")
    p.add_argument("--articles", type=int, default=20, help="per split")
    p.add_argument("--ngrams", type=non_negative, nargs="+", default=[0, 3, 4])
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    return p.parse_args(argv)


def choose(scores: dict[int, dict[str, dict[str, float]]]) -> int:
    """The n whose student ROUGE-L is highest; the smallest such n on a tie."""
    return max(sorted(scores), key=lambda n: scores[n]["student"]["rouge_l"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    from flows.config import load_config
    from models.loading import load_causal_lm, load_tokenizer
    from models.loading_config import ModelSpec
    from tasks.distill.distill import held_out_pairs
    from tasks.distill.evaluate import summary_rouge
    from tasks.distill.pending import training_data
    from tasks.refresh.pending import promoted_model
    from warehouse import Catalog

    if not (args.home / "catalog.duckdb").exists():
        sys.exit(f"{args.home}: no catalog here (give the LLM4ALL_HOME of a finished demo)")
    cfg = load_config(args.config)
    dcfg = cfg.distill
    catalog = Catalog(args.home)
    student_info = promoted_model(catalog, dcfg.student_name(args.dataset))
    tokens, _ = training_data(catalog, args.dataset, cfg.teacher, dcfg)
    models = {
        "student": load_causal_lm(ModelSpec(path=student_info.path), "cpu"),
        "teacher": load_causal_lm(cfg.teacher, "cpu"),
    }
    tokenizer = load_tokenizer(cfg.teacher)
    # As distill: prompt + summary fit one block of the snapshots the student was trained on
    # (their recorded block size, not the config's, which may have changed since).
    sizes = {int(v.meta["block_size"]) for v in tokens}
    if len(sizes) != 1:
        sys.exit(f"{args.home}: the tokens snapshots disagree on the block size: {sorted(sizes)}")
    block = sizes.pop()

    def run(split: str, ngrams: list[int]) -> dict[int, dict[str, Any]]:
        pairs, template = held_out_pairs(catalog, tokens, args.articles, split)
        if not pairs or template is None:
            sys.exit(f"{args.home}: no {split} articles with summaries")
        out: dict[int, dict[str, Any]] = {}
        for n in ngrams:
            t0 = time.perf_counter()
            scores, examples = summary_rouge(
                models, tokenizer, pairs, template,
                max_prompt_tokens=block - dcfg.rouge_max_new_tokens,
                max_new_tokens=dcfg.rouge_max_new_tokens, no_repeat_ngram=n, examples=2,
            )  # fmt: skip
            out[n] = {**scores, "articles": len(pairs), "examples": examples,
                      "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
            s, t = scores["student"], scores["teacher"]
            print(f"  {split:9} n={n}: student ROUGE-L {s['rouge_l']:.3f} (looping {s['looping']}"
                  f", empty {s['empty']})  teacher {t['rouge_l']:.3f} (looping {t['looping']}, "
                  f"empty {t['empty']})  ratio {s['rouge_l'] / max(t['rouge_l'], 1e-9):.2f}  "
                  f"[{len(pairs)} articles, {out[n]['seconds']:.0f} s]", flush=True)  # fmt: skip
        return out

    print(f"{args.home}: student {student_info.key}, {dcfg.rouge_max_new_tokens} new tokens, "
          f"blocks of {block}")  # fmt: skip
    selection = run("selection", sorted(set(args.ngrams)))
    chosen = choose({n: {k: v for k, v in r.items() if k in models} for n, r in selection.items()})
    print(f"chosen on selection articles: n = {chosen}")
    test = run("test", sorted({0, chosen}))
    result = {
        "home": str(args.home), "student": student_info.key, "chosen": chosen,
        "max_new_tokens": dcfg.rouge_max_new_tokens, "block_size": block,
        "selection": selection, "test": test,
    }  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
