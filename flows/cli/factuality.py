"""`llm4all train-factuality`: train the factual-consistency model `curate` and `score` use."""

from __future__ import annotations

from typing import Any

from flows.cli import app as cli
from flows.cli.app import say


@cli.app.command("train-factuality")
def train_factuality(
    dataset: cli.DatasetOpt,
    config: cli.ConfigOpt = None, set_: cli.SetOpt = None, as_json: cli.JsonOpt = False,
    debug: cli.DebugOpt = False,
) -> None:  # fmt: skip
    """Train a factuality model on a dataset's (document, summary) pairs, register, gate it.

    The newest promoted one scores `factuality_score` in curate and score (factcheck.* settings;
    within 19 min on 2 CPU cores with the defaults)."""

    def work(inv: cli.Invocation) -> dict[str, Any]:
        return inv.run_flow("flows.factuality:train_factuality_flow", dataset=dataset)

    cli.run_command(
        work, printer, config=config, sets=set_, as_json=as_json, debug=debug,
        names={"dataset name": dataset},
    )  # fmt: skip


def printer(out: dict[str, Any]) -> None:
    m, x = out["model"], out["metrics"]
    gate = {True: "passed", False: "FAILED", None: "not run"}[m["gate_passed"]]
    if out["skipped"]:
        say(f"{m['key']} already holds this run (gate {gate}): nothing to do")
        return
    say(f"registered {m['key']} ({m['path']}) from {', '.join(out['source'])}")
    say(
        f"  {x['pairs']:,} pairs, {x['train_examples']:,} synthetic examples, {x['steps']} steps "
        f"in {x['wall_s']:.0f} s"
    )
    say(
        f"  gate AUROC {x['gate_auroc']:.3f} on {x['gate_pairs']} synthetic pairs of held-out "
        f"documents (text features alone {x['gate_auroc_text_features_only']:.3f})"
    )
    say(f"gate factuality: {gate}{'; promoted' if m['promoted'] else ''}")
