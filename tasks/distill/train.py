"""The training loop: a student learns from the teacher's distributions (and the data).

nanoGPT-style, written with `accelerate` so that the same code runs on one CPU or on several
GPUs (`accelerate launch -m flows.cli distill ...`): AdamW (or bitsandbytes' 8-bit AdamW),
linear warmup then cosine decay, gradient accumulation and clipping, bf16 autocast on CUDA,
a held-out loss every `eval_every` steps with early stopping, and a checkpoint every
`checkpoint_every` steps (weights as safetensors, optimizer + schedule + counters as a torch
file, a COMPLETE marker written last) that a rerun resumes from. Batches are drawn from a
generator seeded by (seed, step, micro-batch, rank), so a resumed run sees the batches the
uninterrupted one would, and each process of a multi-GPU run sees its own.

Offline (default), the KD targets come from the logit cache and the loss is a sparse one
(models/losses.py); online, the teacher runs on each batch and the loss is the dense one, plus,
when configured, the feature- and relation-based terms of models/features.py.
With `keep: best` (default), the weights with the lowest held-out loss are the ones returned.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from models.features import FeatureDistiller
from models.losses import (
    SparseBatch,
    cross_entropy,
    kd_loss,
    masked_mean,
    sparse_batch,
    sparse_kd_loss,
    to_device,
)
from tasks.distill.checkpoint import (
    BEST,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    save_weights,
)
from tasks.distill.config import DistillConfig
from tasks.distill.data import CacheReader, TokenBlocks

log = logging.getLogger(__name__)


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, L)
    loss_mask: torch.Tensor  # (B, L)
    targets: SparseBatch | None  # offline: the cached targets of the B·L positions

    @property
    def tokens(self) -> int:
        return int(self.input_ids.numel())


@dataclass
class TrainResult:
    steps: int
    tokens: int  # tokens trained on in this run (not counting a resumed run's earlier part)
    seconds: float
    tokens_per_s: float
    s_per_step: float
    final_loss: float | None
    best_val_loss: float | None
    kept_step: int  # the step whose weights the student holds now (cfg.keep)
    stopped_early: bool
    resumed_from: int | None
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def make_batch(
    blocks: TokenBlocks,
    indices: np.ndarray,
    caches: list[CacheReader] | None,
    device: torch.device | str = "cpu",
) -> Batch:
    ids = to_device(torch.from_numpy(blocks.input_ids[indices]), device)  # pinned on CUDA
    mask = to_device(torch.from_numpy(blocks.loss_mask[indices].astype(np.float32)), device)
    targets = None
    if caches is not None:
        from models.logit_cache import concat

        parts = [caches[blocks.source[i]].block(int(blocks.local[i])) for i in indices]
        targets = sparse_batch(concat(parts)).to(device)
    return Batch(ids, mask, targets)


def next_token_mask(loss_mask: torch.Tensor) -> torch.Tensor:
    """Weight of position t: the loss mask of token t + 1 (the last position has none)."""
    out = torch.zeros_like(loss_mask)
    out[:, :-1] = loss_mask[:, 1:]
    return out


def batch_loss(
    student: torch.nn.Module,
    batch: Batch,
    cfg: DistillConfig,
    vocab_size: int,
    teacher: torch.nn.Module | None = None,
    features: FeatureDistiller | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted KD + CE (+ feature terms) of one micro-batch, averaged over the positions
    that carry loss."""
    if features is not None:
        with features.capturing():
            return _batch_loss(student, batch, cfg, vocab_size, teacher, features)
    return _batch_loss(student, batch, cfg, vocab_size, teacher, None)


def _batch_loss(
    student: torch.nn.Module,
    batch: Batch,
    cfg: DistillConfig,
    vocab_size: int,
    teacher: torch.nn.Module | None,
    features: FeatureDistiller | None,
) -> tuple[torch.Tensor, dict[str, float]]:
    logits = student(input_ids=batch.input_ids).logits[..., :vocab_size]
    n_pos = logits.shape[0] * logits.shape[1]
    flat = logits.reshape(n_pos, vocab_size)
    weights = next_token_mask(batch.loss_mask).reshape(n_pos)
    total = torch.zeros((), device=flat.device)
    parts: dict[str, float] = {}
    if cfg.ce_weight > 0:
        labels = torch.zeros_like(batch.input_ids)
        labels[:, :-1] = batch.input_ids[:, 1:]
        ce = masked_mean(cross_entropy(flat, labels.reshape(n_pos)), weights)
        total = total + cfg.ce_weight * ce
        parts["ce"] = float(ce.detach())
    t_logits = None
    if teacher is not None and (cfg.kd_weight > 0 or features is not None):
        with torch.no_grad():
            t_logits = teacher(input_ids=batch.input_ids).logits[..., :vocab_size]
    if cfg.kd_weight > 0:
        if t_logits is not None:
            per = kd_loss(
                cfg.kd_loss,
                flat,
                t_logits.reshape(n_pos, vocab_size),
                temperature=cfg.temperature,
                beta=cfg.jsd_beta,
            )
        elif batch.targets is not None:
            per = sparse_kd_loss(cfg.kd_loss, flat, batch.targets, beta=cfg.jsd_beta)
        else:
            raise ValueError("KD needs either cached targets (offline) or a teacher (online)")
        kd = masked_mean(per, weights)
        total = total + cfg.kd_weight * kd
        parts["kd"] = float(kd.detach())
    if features is not None:
        # Every position's hidden state and relations count, the prompt's included: they are
        # what the student computes, not what it is asked to predict.
        weight = {"hidden": cfg.hidden_weight, "relation": cfg.relation_weight}
        for name, per in features.losses().items():
            term = per.mean()
            total = total + weight[name] * term
            parts[name] = float(term.detach())
    return total, parts


@torch.no_grad()
def held_out_loss(
    model: torch.nn.Module,
    blocks: TokenBlocks,
    indices: np.ndarray,
    vocab_size: int,
    batch_blocks: int = 8,
) -> float | None:
    """Mean next-token cross-entropy over the loss-carrying positions of these blocks."""
    if len(indices) == 0:
        return None
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0.0
    for lo in range(0, len(indices), batch_blocks):
        batch = make_batch(blocks, indices[lo : lo + batch_blocks], None, device)
        logits = model(input_ids=batch.input_ids).logits[..., :vocab_size].float()
        labels = batch.input_ids[:, 1:]
        w = batch.loss_mask[:, 1:]
        ce = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, vocab_size), labels.reshape(-1), reduction="none"
        )
        total += float((ce * w.reshape(-1)).sum())
        count += float(w.sum())
    model.train(was_training)
    return total / count if count else None


def lr_at(step: int, cfg: DistillConfig) -> float:
    """Multiplier of cfg.lr at `step` (0-based): linear warmup, then cosine to min_lr_ratio."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    span = max(cfg.max_steps - cfg.warmup_steps, 1)
    progress = min((step - cfg.warmup_steps) / span, 1.0)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(
    model: torch.nn.Module, cfg: DistillConfig, extra: torch.nn.Module | None = None
) -> torch.optim.Optimizer:
    """AdamW over the model's (and `extra`'s) parameters; weight decay on 2-D weights only."""
    params = [p for p in model.parameters() if p.requires_grad]
    if extra is not None:
        params += [p for p in extra.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.optimizer == "adamw8bit":
        # bitsandbytes >= 0.48 runs its 8-bit optimizers on CPU too (~2 bytes of state per
        # parameter instead of 8); only an import or setup error sends us back to AdamW.
        try:
            import bitsandbytes as bnb

            return bnb.optim.AdamW8bit(groups, lr=cfg.lr)
        except Exception as e:
            warnings.warn(f"bitsandbytes AdamW8bit unavailable ({e}); using AdamW", stacklevel=2)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def sample_indices(pool: np.ndarray, n: int, seed: int, step: int, micro: int) -> np.ndarray:
    """The blocks of one micro-batch: a function of (seed, step, micro) only."""
    rng = np.random.default_rng([seed, step, micro])
    return pool[rng.choice(len(pool), size=n, replace=len(pool) < n)]


def batch_indices(
    pool: np.ndarray,
    n: int,
    seed: int,
    step: int,
    micro: int,
    replay: np.ndarray | None = None,
    share: float = 0.0,
) -> np.ndarray:
    """A micro-batch from `pool`, of which Binomial(n, share) blocks (in expectation a
    `share` of them) come from `replay` instead."""
    if replay is None or len(replay) == 0 or share <= 0:
        return sample_indices(pool, n, seed, step, micro)
    rng = np.random.default_rng([seed, step, micro, 1])
    n_old = int(rng.binomial(n, share))
    old = replay[rng.choice(len(replay), size=n_old, replace=len(replay) < n_old)]
    return np.concatenate([sample_indices(pool, n - n_old, seed, step, micro), old])


# --------------------------------------------------------------------------- the loop
def train_student(
    student: torch.nn.Module,
    blocks: TokenBlocks,
    cfg: DistillConfig,
    *,
    vocab_size: int,
    out_dir: Path,
    caches: list[CacheReader] | None = None,
    teacher: torch.nn.Module | None = None,
    layers: list[int] | None = None,
    train_pool: np.ndarray | None = None,
    val_pool: np.ndarray | None = None,
    replay_pool: np.ndarray | None = None,
    replay_share: float = 0.0,
    progress: bool = True,
) -> TrainResult:
    """Train `student` in place for cfg.max_steps (less if it stops early).

    `layers[i]` is the teacher layer student layer i was copied from (needed by the feature
    terms, hidden_weight and relation_weight). The pools are block indices: by default all
    training / selection blocks; a refresh trains on the new blocks and mixes in
    `replay_share` of `replay_pool` (earlier data) per batch."""
    from accelerate import Accelerator

    if cfg.kd_weight > 0 and (caches is None) == (teacher is None):
        raise ValueError("give caches (offline) or a teacher (online), not both or neither")
    use_features = cfg.hidden_weight > 0 or cfg.relation_weight > 0
    if use_features and (teacher is None or layers is None):
        raise ValueError("hidden_weight / relation_weight need the teacher and the layer map")
    torch.manual_seed(cfg.seed)
    device = next(student.parameters()).device
    # One process: a thin wrapper. Under `accelerate launch`: one process per GPU, the model
    # wrapped for gradient all-reduce, checkpoints written by the main process only.
    accelerator = Accelerator(cpu=device.type == "cpu")
    if accelerator.device.type != device.type or (
        device.type != "cpu" and accelerator.device != device
    ):  # (a multi-CPU launch says cpu:0 for cpu)
        device = accelerator.device
        student.to(device)
        if teacher is not None:
            teacher.to(device)
    rank, world = accelerator.process_index, accelerator.num_processes
    train_pool = blocks.train() if train_pool is None else train_pool
    # blocks that choose (keep-best, early stop): the first eval_blocks selection blocks, or
    # exactly the pool given; never the test blocks reported after training
    val_pool = blocks.selection()[: cfg.eval_blocks] if val_pool is None else val_pool
    if len(train_pool) == 0:
        raise ValueError("no training blocks")
    if len(val_pool) == 0:
        log.warning("no selection blocks: no periodic evaluation, no early stop, last weights")
    features = None
    if use_features:
        assert teacher is not None and layers is not None
        features = FeatureDistiller(
            student,
            teacher,
            layers,
            hidden=cfg.hidden_weight > 0,
            relations=cfg.relation_weight > 0,
            relation_heads=cfg.relation_heads,
        ).to(device)
    optimizer = make_optimizer(student, cfg, features if cfg.hidden_weight > 0 else None)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_at(s, cfg))
    model, optimizer = accelerator.prepare(student, optimizer)  # the scheduler: stepped by us
    state: dict[str, Any] = {"step": 0, "best": None, "bad_evals": 0, "history": []}
    resumed_from = None
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = latest_checkpoint(out_dir) if cfg.resume else None
    if ckpt is not None:
        state = load_checkpoint(ckpt, student, optimizer, scheduler, features)
        resumed_from = state["step"]
        log.info("resuming from %s (step %d)", ckpt, resumed_from)
    autocast = torch.autocast(
        device_type=device.type, dtype=torch.bfloat16, enabled=cfg.bf16 and device.type == "cuda"
    )
    model.train()
    if teacher is not None:
        teacher.eval()
    start_step, tokens, last_loss = state["step"], 0, None
    tokens_before = int(state.get("tokens", 0))  # a resumed run reports the whole run's count
    stopped_early = bool(state.get("stopped_early"))  # a finished run resumed: nothing to do
    started = time.monotonic()
    bar = tqdm(
        total=cfg.max_steps,
        initial=start_step,
        desc="distill",
        unit="step",
        disable=not progress or not accelerator.is_main_process,
    )
    step = start_step
    while step < cfg.max_steps and not stopped_early:
        optimizer.zero_grad(set_to_none=True)
        step_loss, parts = 0.0, {}
        for micro in range(cfg.grad_accum):
            idx = batch_indices(
                train_pool, cfg.batch_blocks, cfg.seed, step, micro * world + rank,
                replay_pool, replay_share,
            )  # fmt: skip
            batch = make_batch(blocks, idx, caches if teacher is None else None, device)
            last_micro = micro == cfg.grad_accum - 1
            sync = contextlib.nullcontext() if last_micro else accelerator.no_sync(model)
            with sync:  # gradients are all-reduced on the last micro-batch only
                with autocast:
                    loss, parts = batch_loss(model, batch, cfg, vocab_size, teacher, features)
                accelerator.backward(loss / cfg.grad_accum)
            step_loss += float(loss.detach()) / cfg.grad_accum
            tokens += batch.tokens * world
        if world > 1:  # the loss of the global batch: the mean over the ranks' shares
            step_loss = float(accelerator.reduce(torch.tensor(step_loss, device=device), "mean"))
        if not math.isfinite(step_loss):
            raise FloatingPointError(f"loss is {step_loss} at step {step}")
        if cfg.clip_grad is not None:
            accelerator.clip_grad_norm_(model.parameters(), cfg.clip_grad)
        optimizer.step()
        scheduler.step()
        step += 1
        last_loss = step_loss
        elapsed = time.monotonic() - started
        bar.update(1)
        bar.set_postfix(loss=f"{step_loss:.4f}", tok_s=f"{tokens / max(elapsed, 1e-9):,.0f}")
        record: dict[str, Any] = {"step": step, "loss": round(step_loss, 5), **parts}
        log.info("step %d/%d: loss %.4f, %.0f tokens/s", step, cfg.max_steps, step_loss,
                 tokens / max(elapsed, 1e-9))  # fmt: skip
        main = accelerator.is_main_process
        if len(val_pool) and (step % cfg.eval_every == 0 or step == cfg.max_steps):
            val = held_out_loss(student, blocks, val_pool, vocab_size, cfg.batch_blocks)
            record["val_loss"] = val
            if val is not None and (state["best"] is None or val < state["best"] - 1e-6):
                state["best"], state["best_step"], state["bad_evals"] = val, step, 0
                if main:
                    save_weights(student, out_dir / BEST)
            else:
                state["bad_evals"] += 1
            log.info("step %d: loss %.4f, held-out loss %s", step, step_loss, val)
            if cfg.early_stop_patience and state["bad_evals"] >= cfg.early_stop_patience:
                stopped_early = True
        state["history"].append(record)
        state["tokens"], state["last_loss"] = tokens_before + tokens, step_loss
        state["step"], state["stopped_early"] = step, stopped_early
        if step % cfg.checkpoint_every == 0 or step == cfg.max_steps or stopped_early:
            if main:
                save_checkpoint(
                    out_dir, step, student, optimizer, scheduler, state, cfg.keep_checkpoints,
                    features,
                )  # fmt: skip
            accelerator.wait_for_everyone()
        if stopped_early:
            log.info("early stop at step %d: no better held-out loss in %d evaluations",
                     step, cfg.early_stop_patience)  # fmt: skip
    bar.close()
    if features is not None:
        features.remove()
    kept_step = step
    if cfg.keep == "best" and state.get("best_step") and state["best_step"] != step:
        from safetensors.torch import load_model

        load_model(student, str(out_dir / BEST), device=str(device))
        kept_step = state["best_step"]
        log.info("kept the weights of step %d (held-out loss %.4f)", kept_step, state["best"])
    seconds = time.monotonic() - started
    done = step - start_step
    return TrainResult(
        steps=step,
        tokens=tokens_before + tokens,
        seconds=round(seconds, 3),
        tokens_per_s=round(tokens / seconds, 1) if seconds > 0 else 0.0,
        s_per_step=round(seconds / done, 4) if done else 0.0,
        final_loss=last_loss if last_loss is not None else state.get("last_loss"),
        best_val_loss=state["best"],
        kept_step=kept_step,
        stopped_early=stopped_early,
        resumed_from=resumed_from,
        history=state["history"],
    )
