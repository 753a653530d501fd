"""Distil: teacher -> student init -> training -> evaluation -> registry -> gate.

The student trains on every gated tokens snapshot of a dataset; offline, each of them needs a
gated logit cache of the same teacher (the newest one is used). The run works in
`<home>/work/distill/<dataset>/<run key>/`, where the key hashes the config, the teacher and
the data, so a rerun after a kill resumes from the newest checkpoint, and a rerun after a
success registers nothing new (the registry already holds that model).

Under `accelerate launch` every process trains its share of each batch (tasks/distill/train.py);
only the main one evaluates, saves, registers and gates the student.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from data_quality import GatesConfig
from models.loading import load_causal_lm, load_tokenizer, model_vocab_size
from models.loading_config import ModelSpec
from tasks.distill.config import DistillConfig, DistillError
from tasks.distill.data import CacheReader, TokenBlocks, read_blocks
from tasks.distill.evaluate import evaluate_student, summary_rouge
from tasks.distill.pending import DistillResult, student_run
from tasks.distill.students import make_student
from tasks.distill.train import TrainResult, train_student
from tasks.logits.summaries import SUMMARIES, read_summary_blocks
from tasks.publish import Lineage, done_run, publish
from tasks.runtime import current_flow_run_id, launch_rank
from warehouse import Catalog, VersionInfo

log = logging.getLogger(__name__)


def held_out_pairs(
    catalog: Catalog,
    tokens: list[VersionInfo],
    limit: int,
    split: Literal["selection", "test"] = "test",
) -> tuple[list[tuple[str, str]], str | None]:
    """Up to `limit` (document, summary) pairs of `split`'s documents (test: the reported
    ones; selection: for choices such as decoding), and the template the snapshots were rendered
    with; ([], None) without. A document's split is a function of its content hash
    (tasks/tokens/tokenize.split_of), so the articles are taken from the whole source snapshot,
    not only from the documents a budget let into the tokens: no block of another split holds
    any of them. Kept rows only, in id order."""
    import duckdb

    from tasks.tokens.config import TokensConfig
    from tasks.tokens.tokenize import split_of

    if split not in ("selection", "test"):  # never the training documents
        raise ValueError(f"held-out split must be 'selection' or 'test', got {split!r}")
    pairs: list[tuple[str, str]] = []
    template = None
    for v in tokens:
        config = v.meta.get("config") or {}
        if limit <= len(pairs) or config.get("pairs", "summarize") != "summarize":
            continue
        split_cfg = TokensConfig.model_validate(config)
        stage, _, rest = str(v.meta.get("source", "")).partition("/")
        name, _, version = rest.partition("@")
        if not version:
            continue
        files = [str(f) for f in catalog.get(stage, name, int(version)).ref.files()]
        con = duckdb.connect()
        try:
            cols = {r[0] for r in con.execute(
                "DESCRIBE SELECT * FROM read_parquet(?, hive_partitioning = false)", [files]
            ).fetchall()}  # fmt: skip
            keep = "AND keep" if "keep" in cols else ""
            rows = con.execute(
                "SELECT id, content_sha256 FROM read_parquet(?, hive_partitioning = false) "
                f"WHERE summary IS NOT NULL AND length(summary) > 0 {keep} ORDER BY id",
                [files],
            ).fetchall()
            ids = [i for i, h in rows if split_of(h, split_cfg) == split][: limit - len(pairs)]
            found = dict(
                (i, (t, s_))
                for i, t, s_ in con.execute(
                    "SELECT id, text, summary FROM read_parquet(?, hive_partitioning = false) "
                    "WHERE id IN (SELECT unnest(?))",
                    [files, ids],
                ).fetchall()
            )
        finally:
            con.close()
        pairs += [found[i] for i in ids if i in found]
        template = template or config.get("template")
    return pairs, template if pairs else None


def summary_blocks(
    blocks: TokenBlocks, readers: list[CacheReader] | None, caches: list[VersionInfo]
) -> tuple[TokenBlocks, list[CacheReader] | None, np.ndarray]:
    """`blocks` with the teacher-summary blocks of the caches appended as training blocks,
    the readers of their targets added, and the indices of those blocks."""
    if readers is None:
        return blocks, readers, np.zeros(0, np.int64)
    readers = list(readers)
    for c in caches:
        found = read_summary_blocks(Path(c.ref.path))
        if found is None:
            continue
        ids, mask = found
        blocks = blocks.extended(ids, mask, f"{c.ref.key} summaries")
        readers.append(CacheReader(Path(c.ref.path) / SUMMARIES))
    train = blocks.train()  # a summary that came out empty has no loss: left out
    return blocks, readers, train[blocks.source[train] >= len(caches)]


def distill(
    dataset: str, catalog: Catalog, teacher_spec: ModelSpec, cfg: DistillConfig | None = None,
    gates: GatesConfig | None = None,
    *, flow_run_id: str | None = None, progress: bool = True,
) -> DistillResult:  # fmt: skip
    """Train, evaluate, register and gate a student of `teacher_spec` on `dataset`.

    Raises GateFailed (after recording it in the registry) when the student fails its gate.
    """
    import torch

    cfg = cfg or DistillConfig()
    gates = gates or GatesConfig()
    started = time.monotonic()
    run = student_run(catalog, dataset, teacher_spec, cfg)
    name, tokens, caches, key = run.name, run.tokens, run.caches, run.key
    if done := done_run(catalog, name, key):
        log.info("%s already holds this run (%s): nothing to do", done.key, key)
        return DistillResult.already_done(dataset, done)

    teacher = load_causal_lm(teacher_spec, rank_device(cfg.device))
    vocab = model_vocab_size(teacher)
    for c in caches:
        if int(c.meta.get("vocab_size", vocab)) != vocab:
            raise DistillError(f"{c.ref.key} has vocab {c.meta['vocab_size']}, teacher {vocab}")
    torch.manual_seed(cfg.seed)
    blocks = read_blocks([(v.ref.key, v.ref.files()) for v in tokens])
    # fp32, saveable (GGUF too); depth/width: cut after a calibration pass on training blocks
    student, layers, student_info = make_student(teacher, cfg, blocks)
    work = catalog.home / "work" / "distill" / dataset / key
    train, run_cfg, summaries = train_recipe(
        student, teacher, blocks, caches, cfg, layers, work, vocab=vocab, progress=progress
    )
    if launch_rank() > 0:  # `accelerate launch`: the main process evaluates, saves, registers
        return DistillResult(dataset, {}, False, train.to_dict(), None, 0.0)
    student.eval()
    evaluation = evaluate_student(
        student,
        teacher,
        blocks,
        vocab,
        max_blocks=None,
        batch_blocks=cfg.batch_blocks,
        speed_tokens=cfg.eval_speed_tokens,
    )
    pairs, template = held_out_pairs(catalog, tokens, cfg.rouge_pairs)
    if pairs and template:
        rouge, examples = summary_rouge(
            {"student": student, "teacher": teacher},
            load_tokenizer(teacher_spec),
            pairs,
            template,
            max_prompt_tokens=blocks.block_size - cfg.rouge_max_new_tokens,
            max_new_tokens=cfg.rouge_max_new_tokens,
            no_repeat_ngram=cfg.rouge_no_repeat_ngram,
        )
        evaluation.rouge_pairs = len(pairs)
        evaluation.student_rouge_l = rouge["student"]["rouge_l"]
        evaluation.teacher_rouge_l = rouge["teacher"]["rouge_l"]
        evaluation.student_empty_summaries = rouge["student"]["empty"]
        evaluation.teacher_empty_summaries = rouge["teacher"]["empty"]
        evaluation.student_looping_summaries = rouge["student"]["looping"]
        evaluation.teacher_looping_summaries = rouge["teacher"]["looping"]
        evaluation.examples = examples
        evaluation.rouge_no_repeat_ngram = cfg.rouge_no_repeat_ngram
    final = save_student(student, teacher_spec, work / "final")
    metrics = {
        **evaluation.to_dict(),
        "layers": layers,
        "student": student_info,
        "hidden_weight": run_cfg.hidden_weight,
        "relation_weight": run_cfg.relation_weight,
        "summary_blocks": summaries,
        "train_steps": train.steps,
        "train_tokens": train.tokens,
        "train_s_per_step": train.s_per_step,
        "final_loss": train.final_loss,
        "best_val_loss": train.best_val_loss,
        "kept_step": train.kept_step,
        "stopped_early": train.stopped_early,
        "mode": cfg.mode,
        "kd_loss": cfg.kd_loss,
        "run_key": key,
    }
    lineage = Lineage(
        teacher=teacher_spec.path,
        tokens=[v.ref.key for v in tokens],
        logits=[v.ref.key for v in caches],
        config_hash=cfg.config_hash(),
        parent=teacher_spec.path,
        flow_run_id=flow_run_id,
    )
    info = publish(
        catalog, name, final, lineage, metrics, gate="student", gates=gates,
        work=work / "checkpoints", gate_run={"bad_weights": nonfinite_weights(student)},
    )  # fmt: skip
    return DistillResult(
        dataset,
        info.to_dict(),
        False,
        train.to_dict(),
        evaluation.to_dict(),
        round(time.monotonic() - started, 3),
    )


def train_recipe(
    student: Any,
    teacher: Any,
    blocks: TokenBlocks,
    caches: list[VersionInfo],
    cfg: DistillConfig,
    layers: list[int],
    work: Path,
    *,
    vocab: int,
    progress: bool = True,
) -> tuple[TrainResult, DistillConfig, int]:
    """Train `student` (cut from `teacher`, `layers` its source layers) on `blocks` the way the
    distill stage does: the caches' targets, their teacher-summary blocks as extra training
    blocks, the feature terms resolved for this cut. Returns (the training result, the config
    it ran with, the number of teacher-summary blocks). bench/kd_vs_ce.py calls it too."""
    readers = [CacheReader(Path(c.ref.path)) for c in caches] if caches else None
    regular = blocks.train()
    blocks, readers, summaries = summary_blocks(blocks, readers, caches)
    hidden_w, relation_w = cfg.feature_weights(len(layers) < int(teacher.config.num_hidden_layers))
    run_cfg = cfg.model_copy(update={"hidden_weight": hidden_w, "relation_weight": relation_w})
    train = train_student(
        student,
        blocks,
        run_cfg,
        vocab_size=vocab,
        out_dir=work,
        caches=readers,
        teacher=teacher if cfg.mode == "online" or hidden_w or relation_w else None,
        layers=layers,
        train_pool=regular if cfg.summary_share is not None else None,
        replay_pool=summaries if cfg.summary_share is not None else None,
        replay_share=cfg.summary_share or 0.0,
        progress=progress,
    )
    return train, run_cfg, len(summaries)


def rank_device(device: str | None) -> str | None:
    """Under a multi-GPU launch each process loads the teacher onto its own GPU (LOCAL_RANK)
    rather than all onto the first; otherwise `device` as configured."""
    import os

    import torch

    local = os.environ.get("LOCAL_RANK")
    if local is None or (device or "cuda") != "cuda" or not torch.cuda.is_available():
        return device
    return f"cuda:{int(local)}"


def save_student(model: Any, tokenizer_of: ModelSpec, folder: Path) -> Path:
    """`model` (safetensors) and the tokenizer of `tokenizer_of` into `folder`, replacing it."""
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(str(folder), safe_serialization=True)
    load_tokenizer(tokenizer_of).save_pretrained(str(folder))
    return folder


def nonfinite_weights(model: Any) -> int:
    """How many weights of `model` are NaN or infinite (the student gate wants none)."""
    import torch

    return sum(int((~torch.isfinite(p)).sum()) for p in model.parameters())


@task(name="distill-student", task_run_name="distill {dataset}", cache_policy=NO_CACHE)
def distill_student(
    dataset: str, home: str, teacher: ModelSpec, cfg: DistillConfig, gates: GatesConfig
) -> DistillResult:
    """Train, evaluate, register and gate a student (see `distill`)."""
    return distill(
        dataset, Catalog(Path(home)), teacher, cfg, gates, flow_run_id=current_flow_run_id()
    )
