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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from data_quality import GatesConfig
from models.loading import load_causal_lm, load_tokenizer, model_vocab_size
from models.loading_config import ModelSpec
from models.student import every_other_layer, student_from_teacher, trainable
from tasks.distill.config import DistillConfig, DistillError
from tasks.distill.data import SPLIT_CODES, CacheReader, read_blocks, split_codes
from tasks.distill.evaluate import evaluate_student, summary_rouge
from tasks.distill.train import train_student
from tasks.publish import Lineage, done_run, publish, run_key
from tasks.runtime import current_flow_run_id, launch_rank
from warehouse import Catalog, VersionInfo, validate_name

log = logging.getLogger(__name__)


@dataclass
class DistillResult:
    dataset: str
    model: dict[str, Any]
    skipped: bool  # the registry already held this exact model
    train: dict[str, Any] | None
    evaluation: dict[str, Any] | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def training_data(
    catalog: Catalog, dataset: str, teacher: ModelSpec, cfg: DistillConfig
) -> tuple[list[VersionInfo], list[VersionInfo]]:
    """(gated tokens versions not superseded by curation, their gated logit caches from the
    teacher; [] online). The caches of one run all hold the same kind of targets (mode and
    draws or k): the newest kind that covers every tokens version."""
    from tasks.tokens.pending import trainable_tokens

    tokens = trainable_tokens(catalog, dataset)
    if not tokens:
        raise DistillError(f"no tokens snapshot of {dataset!r} has passed its gate")
    if cfg.mode == "online":
        return tokens, []
    by_kind: dict[str, dict[str, VersionInfo]] = {}
    for v in catalog.versions("logits", dataset):
        if v.gate_passed and v.meta.get("teacher") == teacher.path:
            by_kind.setdefault(cache_kind(v.meta), {})[str(v.meta.get("tokens"))] = v
    complete = [k for k in by_kind if all(t.ref.key in by_kind[k] for t in tokens)]
    if not complete:
        best = max(by_kind, key=lambda k: sum(t.ref.key in by_kind[k] for t in tokens), default="")
        missing = next(t for t in tokens if t.ref.key not in by_kind.get(best, {}))
        raise DistillError(
            f"no gated logit cache of {missing.ref.key} from {teacher.path}"
            + (f" with the others' kind of targets ({best})" if by_kind else "")
            + f": run `llm4all cache-logits --dataset {dataset}` first, or set "
            "distill.mode=online"
        )
    kind = max(complete, key=lambda k: max(c.ref.version for c in by_kind[k].values()))
    return tokens, [by_kind[kind][t.ref.key] for t in tokens]


def cache_kind(meta: dict[str, Any]) -> str:
    """What makes two caches' targets mixable: the mode, and S draws or k ids."""
    params = meta.get("params") or {}
    return f"{params.get('mode')}/{params.get('samples', params.get('k'))}"


def held_out_pairs(
    catalog: Catalog, tokens: list[VersionInfo], limit: int
) -> tuple[list[tuple[str, str]], str | None]:
    """Up to `limit` (document, summary) pairs of the tokens snapshots' test documents (never
    trained or selected on), and the template they were rendered with; ([], None) without."""
    import duckdb
    import pyarrow.parquet as pq

    pairs: list[tuple[str, str]] = []
    template = None
    for v in tokens:
        config = v.meta.get("config") or {}
        if limit <= len(pairs) or config.get("pairs", "summarize") != "summarize":
            continue
        blocks = pq.read_table(v.ref.files(), columns=["split", "doc_ids"], partitioning=None)
        test = split_codes(blocks.column("split").to_pylist()) == SPLIT_CODES["test"]
        ids = sorted({d for t, docs in zip(test, blocks.column("doc_ids").to_pylist(), strict=True)
                      if t for d in docs})  # fmt: skip
        stage, _, rest = str(v.meta.get("source", "")).partition("/")
        name, _, version = rest.partition("@")
        if not ids or not version:
            continue
        src = catalog.get(stage, name, int(version)).ref
        con = duckdb.connect()
        rows = con.execute(
            "SELECT text, summary FROM read_parquet(?, hive_partitioning = false) "
            "WHERE summary IS NOT NULL AND length(summary) > 0 AND id IN (SELECT unnest(?)) "
            "ORDER BY id LIMIT ?",
            [[str(f) for f in src.files()], ids, limit - len(pairs)],
        ).fetchall()
        con.close()
        pairs += [(t, s) for t, s in rows]
        template = template or config.get("template")
    return pairs, template if pairs else None


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
    validate_name(dataset)
    name = cfg.student_name(dataset)
    validate_name(name)
    started = time.monotonic()
    tokens, caches = training_data(catalog, dataset, teacher_spec, cfg)
    key = run_key({
        "teacher": teacher_spec.path,
        "tokens": [(v.ref.key, v.ref.sha256) for v in tokens],
        "logits": [(v.ref.key, v.ref.sha256) for v in caches],
        "config": cfg.config_hash(),
    })  # fmt: skip
    if done := done_run(catalog, name, key):
        log.info("%s already holds this run (%s): nothing to do", done.key, key)
        return DistillResult(dataset, done.to_dict(), True, None, None, 0.0)

    teacher = load_causal_lm(teacher_spec, rank_device(cfg.device))
    vocab = model_vocab_size(teacher)
    for c in caches:
        if int(c.meta.get("vocab_size", vocab)) != vocab:
            raise DistillError(f"{c.ref.key} has vocab {c.meta['vocab_size']}, teacher {vocab}")
    n_layers = int(teacher.config.num_hidden_layers)
    layers = cfg.layers or every_other_layer(n_layers, cfg.keep_layers or max(n_layers // 2, 1))
    torch.manual_seed(cfg.seed)
    student = trainable(student_from_teacher(teacher, layers))  # fp32, saveable (GGUF too)
    blocks = read_blocks([(v.ref.key, v.ref.files()) for v in tokens])
    work = catalog.home / "work" / "distill" / dataset / key
    readers = [CacheReader(Path(c.ref.path)) for c in caches] if caches else None
    train = train_student(
        student,
        blocks,
        cfg,
        vocab_size=vocab,
        out_dir=work,
        caches=readers,
        teacher=teacher if cfg.mode == "online" else None,
        layers=layers,
        progress=progress,
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
            max_prompt_tokens=blocks.input_ids.shape[1],
            max_new_tokens=cfg.rouge_max_new_tokens,
        )
        evaluation.rouge_pairs = len(pairs)
        evaluation.student_rouge_l, evaluation.teacher_rouge_l = rouge["student"], rouge["teacher"]
        evaluation.examples = examples
    final = save_student(student, teacher_spec, work / "final")
    metrics = {
        **evaluation.to_dict(),
        "layers": layers,
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
