"""Continual learning: continue the promoted student on new data, with replay, and promote the
result only if it learned the new data without forgetting the old.

    current  = the promoted version of the student (registry)
    old      = the tokens snapshots it was trained on; new = the gated ones added since
    train    = re-warm the LR to its peak, re-decay it (Ibrahim et al. 2024), each batch a
               `replay_share` of old training blocks and the rest new ones
    judge    = perplexity on the old and the new held-out blocks, before and after
    promote  = new-set perplexity fell (by > min_new_gain) AND old-set perplexity grew by at
               most max_old_regression; then the student gate runs as after `distill`
    otherwise the candidate is registered with gate_passed = false and the reason, and the
    current version stays promoted.

The run works in `<home>/work/refresh/<dataset>/<run key>/` (resumable, like distill); the key
covers the parent version, the data and the configs, so a rerun after success does nothing.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from data_quality import GatesConfig
from models.loading import load_causal_lm, model_vocab_size
from models.loading_config import ModelSpec
from tasks.distill.config import DistillConfig, DistillError
from tasks.distill.data import CacheReader, TokenBlocks, read_blocks
from tasks.distill.distill import nonfinite_weights, save_student
from tasks.distill.evaluate import evaluate_student
from tasks.distill.train import held_out_loss, train_student
from tasks.publish import Lineage, publish
from tasks.refresh.config import RefreshConfig
from tasks.refresh.pending import RefreshResult, done_before, promoted_model, refresh_run
from tasks.runtime import current_flow_run_id
from warehouse import Catalog

log = logging.getLogger(__name__)


@dataclass
class RefreshDecision:
    promote: bool
    reason: str
    old_ppl_before: float
    old_ppl_after: float
    new_ppl_before: float
    new_ppl_after: float

    @property
    def old_regression(self) -> float:
        return self.old_ppl_after / self.old_ppl_before - 1

    @property
    def new_gain(self) -> float:
        return 1 - self.new_ppl_after / self.new_ppl_before

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["old_regression"] = round(self.old_regression, 5)
        d["new_gain"] = round(self.new_gain, 5)
        return d


def decide(
    before: tuple[float, float], after: tuple[float, float], cfg: RefreshConfig
) -> RefreshDecision:
    """The promotion rule on (old, new) held-out perplexities before and after training."""
    (old_b, new_b), (old_a, new_a) = before, after
    d = RefreshDecision(False, "", old_b, old_a, new_b, new_a)
    if not all(math.isfinite(x) for x in (*before, *after)):
        d.reason = "a perplexity is not finite"
    elif d.new_gain <= cfg.min_new_gain:
        d.reason = (
            f"no gain on the new data: perplexity {new_b:.3f} -> {new_a:.3f} "
            f"(needs a fall of more than {cfg.min_new_gain:.1%})"
        )
    elif d.old_regression > cfg.max_old_regression:
        d.reason = (
            f"forgot the old data: perplexity {old_b:.3f} -> {old_a:.3f} "
            f"(+{d.old_regression:.2%} > {cfg.max_old_regression:.1%})"
        )
    else:
        d.promote = True
        d.reason = (
            f"new-data perplexity {new_b:.3f} -> {new_a:.3f} (-{d.new_gain:.2%}), old-data "
            f"{old_b:.3f} -> {old_a:.3f} ({d.old_regression:+.2%})"
        )
    return d


def spread(indices: np.ndarray, n: int) -> np.ndarray:
    """At most `n` of `indices`, evenly spaced: every snapshot gets a say, not only the first."""
    if len(indices) <= n:
        return indices
    return indices[np.linspace(0, len(indices) - 1, n).round().astype(int)]


def perplexity(
    model: Any, blocks: TokenBlocks, indices: np.ndarray, vocab: int, batch: int
) -> float:
    loss = held_out_loss(model, blocks, indices, vocab, batch)
    return math.exp(loss) if loss is not None else math.nan


def refresh_student(
    dataset: str, catalog: Catalog, teacher_spec: ModelSpec, dcfg: DistillConfig | None = None,
    rcfg: RefreshConfig | None = None, gates: GatesConfig | None = None,
    *, flow_run_id: str | None = None, progress: bool = True,
) -> RefreshResult:  # fmt: skip
    """Continue the promoted student of `dataset` on its new tokens snapshots (see above).

    Raises GateFailed when a candidate that the rule would promote fails the student gate."""
    import torch
    from transformers import AutoModelForCausalLM

    dcfg, rcfg, gates = dcfg or DistillConfig(), rcfg or RefreshConfig(), gates or GatesConfig()
    started = time.monotonic()
    run = refresh_run(catalog, dataset, teacher_spec, dcfg, rcfg)
    if nothing := run.nothing_new():
        log.info("refresh: %s", nothing.skipped)
        return nothing
    if done := done_before(catalog, run):
        log.info("%s already holds this refresh (%s)", done.model["key"], run.key)
        return done
    name, current, tokens, caches, new = run.name, run.current, run.tokens, run.caches, run.new
    tcfg, key = run.train_cfg, run.key

    device = tcfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    teacher = load_causal_lm(teacher_spec, device)
    vocab = model_vocab_size(teacher)
    student = AutoModelForCausalLM.from_pretrained(current.path, dtype=torch.float32).to(device)
    blocks = read_blocks([(v.ref.key, v.ref.files()) for v in tokens])
    is_new = np.isin(blocks.source, new)
    train_all = blocks.train()
    new_train, old_train = train_all[is_new[train_all]], train_all[~is_new[train_all]]
    if len(new_train) == 0:
        raise DistillError("the new tokens snapshots hold no training blocks")
    # Selection blocks choose the step to keep; test blocks judge old vs new for the decision
    # (a decision on the blocks the kept step was chosen on would flatter the candidate).
    held = {}
    for split in ("selection", "test"):
        idx = blocks.indices(split)
        held[split] = {
            "old": spread(idx[~is_new[idx]], tcfg.eval_blocks),
            "new": spread(idx[is_new[idx]], tcfg.eval_blocks),
        }
        for age, chosen in held[split].items():
            if len(chosen) == 0:
                raise DistillError(
                    f"cannot judge a refresh without {split} blocks in the {age} data: raise "
                    "tokens.validation_share (or selection_share), or add more data"
                )

    def old_and_new_ppl() -> tuple[float, float]:
        b = tcfg.batch_blocks
        return (
            perplexity(student, blocks, held["test"]["old"], vocab, b),
            perplexity(student, blocks, held["test"]["new"], vocab, b),
        )

    before = old_and_new_ppl()
    work = catalog.home / "work" / "refresh" / dataset / key
    train = train_student(
        student,
        blocks,
        tcfg,
        vocab_size=vocab,
        out_dir=work,
        caches=[CacheReader(Path(c.ref.path)) for c in caches] if caches else None,
        teacher=teacher if tcfg.mode == "online" else None,
        layers=current.metrics.get("layers"),
        train_pool=new_train,
        # keep-best judges on both sets: on the new one alone it could keep a step that forgot
        val_pool=np.concatenate([held["selection"]["old"], held["selection"]["new"]]),
        replay_pool=old_train,
        replay_share=rcfg.replay_share,
        progress=progress,
    )
    student.eval()
    after = old_and_new_ppl()
    decision = decide(before, after, rcfg)
    verdict = "promote" if decision.promote else "keep the current version"
    log.info("refresh of %s: %s — %s", current.key, verdict, decision.reason)
    evaluation = evaluate_student(
        student,
        teacher,
        blocks,
        vocab,
        batch_blocks=tcfg.batch_blocks,
        speed_tokens=tcfg.eval_speed_tokens,
    )
    final = save_student(student, teacher_spec, work / "final")
    metrics = {
        **evaluation.to_dict(),
        "layers": current.metrics.get("layers"),
        "train_steps": train.steps,
        "train_tokens": train.tokens,
        "final_loss": train.final_loss,
        "mode": tcfg.mode,
        "kd_loss": tcfg.kd_loss,
        "run_key": key,
        "refresh": decision.to_dict(),
        "new_tokens": [tokens[i].ref.key for i in new],
    }
    lineage = Lineage(
        teacher=teacher_spec.path,
        tokens=[v.ref.key for v in tokens],
        logits=[v.ref.key for v in caches],
        config_hash=tcfg.config_hash(),
        parent=current.key,
        flow_run_id=flow_run_id,
    )
    # promote: the student gate decides (a pass promotes it, if `current` is still the
    # promoted version); keep: recorded as not passed, with the decision
    info = publish(
        catalog, name, final, lineage, metrics, gate="student" if decision.promote else None,
        gates=gates, work=work / "checkpoints",
        gate_run={"bad_weights": nonfinite_weights(student)},
        reject=None if decision.promote else {"refresh": decision.to_dict()},
        requires_promoted=current.key,
    )  # fmt: skip
    return RefreshResult(
        dataset,
        current.key,
        info.to_dict(),
        promoted_model(catalog, name).key,
        None,
        decision.to_dict(),
        train.to_dict(),
        round(time.monotonic() - started, 3),
    )


@task(name="refresh-student", task_run_name="refresh {dataset}", cache_policy=NO_CACHE)
def refresh_student_task(
    dataset: str,
    home: str,
    teacher: ModelSpec,
    dcfg: DistillConfig,
    rcfg: RefreshConfig,
    gates: GatesConfig,
) -> RefreshResult:
    """Continue the promoted student on the new data; promote or keep (see `refresh_student`)."""
    return refresh_student(
        dataset, Catalog(Path(home)), teacher, dcfg, rcfg, gates, flow_run_id=current_flow_run_id()
    )
