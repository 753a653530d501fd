"""Quantize: a registered model (or the teacher) -> quantized variant -> evaluation against its
fp32 parent, in one process -> registry (lineage to the parent) -> gate.

The evaluation is the distill stage's: held-out perplexity on the test token blocks of a
dataset's gated tokens snapshots (never trained on), here of the parent in fp32 and of its
quantized copy, so the delta is the quantization's alone. Beside it: the bytes of the quantized
weights against their fp32 bytes, the bytes on disk (the whole registered folder: weights,
config, tokenizer) against the fp32 weights' bytes, the process's peak RSS, and forward and
generation tokens/s of both. The key of a run hashes the parent, the backend settings and the
evaluation data, so a rerun with the same inputs registers nothing (`skipped`).

gguf-* methods (tasks/quantize/gguf.py) write one GGUF file, calibrated on training blocks
(never the test blocks); the evaluation loads the file back through transformers
(dequantized), and its speed is llama.cpp's (when llama-cpp-python is installed, with
llama.cpp's own perplexity on the same blocks): the dequantized copy runs at fp32's speed.

Public entry points (the pipeline and refresh flows call these):
    quantize_model(model_arg, catalog, teacher_spec, cfg, gates, dataset=None, method=None,
                   flow_run_id=None) -> QuantizeResult
    quantize_registered  (Prefect task: the same, given the warehouse home as a string)
"""

from __future__ import annotations

import logging
import resource
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from data_quality import GateFailed, GatesConfig
from models.loading import load_causal_lm, load_tokenizer, model_vocab_size
from models.loading_config import ModelSpec
from models.quant import (
    QuantError,
    available,
    device_of,
    disk_bytes,
    quantize,
    save,
    weight_bytes,
)
from tasks.distill.data import read_blocks
from tasks.distill.evaluate import compare_on_blocks, generation_speed, model_bytes
from tasks.publish import Lineage, done_run, publish
from tasks.quantize.config import QuantizeConfig, QuantizeError
from tasks.quantize.gguf import llama_cpp_figures, make_gguf
from tasks.quantize.pending import Parent, QuantizeResult, variant_run
from tasks.runtime import current_flow_run_id
from warehouse import Catalog
from warehouse.registry import get_model

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def quantize_model(
    model_arg: str, catalog: Catalog, teacher_spec: ModelSpec, cfg: QuantizeConfig | None = None,
    gates: GatesConfig | None = None,
    *, dataset: str | None = None, method: str | None = None, flow_run_id: str | None = None,
) -> QuantizeResult:  # fmt: skip
    """Quantize `model_arg` (`teacher`, NAME or NAME:VERSION) with `method` (default
    cfg.method), evaluate it against its fp32 parent on `dataset`'s test blocks (default:
    the dataset the parent was trained on), register it as `<parent>-<method>` with the parent
    as lineage, and gate it.

    Raises QuantizeError (nothing to do), QuantError (backend unavailable: one line) or
    GateFailed (after recording it in the registry; the CLI exits 3).
    """

    cfg = cfg or QuantizeConfig()
    gates = gates or GatesConfig()
    method = method or cfg.method
    qcfg = cfg.quant_config(method)
    started = time.monotonic()
    run = variant_run(model_arg, catalog, teacher_spec, cfg, dataset, method)
    parent, dataset, name, tokens, key = run.parent, run.dataset, run.name, run.tokens, run.key
    if done := done_run(catalog, name, key):
        log.info("%s already holds this run (%s): nothing to do", done.key, key)
        return QuantizeResult.already_done(parent.key, done)

    blocks = read_blocks([(v.ref.key, v.ref.files()) for v in tokens])
    val = blocks.test()[: cfg.eval_blocks]
    if len(val) == 0:
        raise QuantizeError(
            f"the tokens snapshots of {dataset!r} have no test blocks (held-out documents not used for selection)"
        )
    device = device_of(qcfg)
    reason = available(method, device)
    if reason:  # before loading anything: one line, not a traceback from deep inside
        raise QuantError(reason)
    fp32 = load_causal_lm(parent.spec, device)
    vocab = model_vocab_size(fp32)
    work = catalog.home / "work" / "quantize" / key
    final = work / "final"
    shutil.rmtree(final, ignore_errors=True)
    t0 = time.monotonic()
    try:  # a failure leaves no partial variant behind
        if qcfg.backend == "gguf":
            quantized, made = make_gguf(
                fp32, parent.spec, teacher_spec, qcfg, cfg, blocks, final, name=name,
                parent_key=parent.key, device=device,
            )  # fmt: skip
        else:
            quantized, made = _make_backend(fp32, parent, qcfg, final, method)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    quantize_s = made.pop("quantize_s", None) or time.monotonic() - t0
    scores = compare_on_blocks(quantized, fp32, blocks, val, vocab, cfg.batch_blocks)
    ppl, parent_ppl = scores["student_ppl"], scores["teacher_ppl"]
    parent_speed = _speeds(fp32, blocks, val, cfg)
    if qcfg.backend == "gguf":  # its speed is a GGUF runtime's: llama.cpp's, when installed
        speed = llama_cpp_figures(final, blocks, val, cfg, parent_ppl)
    else:
        speed = {"runtime": "pytorch"} | _speeds(quantized, blocks, val, cfg)
    on_disk = disk_bytes(final)
    fp32_bytes = model_bytes(fp32)
    metrics = {
        "method": method,
        "bits": qcfg.bits,
        "backend": qcfg.backend,
        "device": device,
        "dataset": dataset,
        "eval_blocks": len(val),
        "positions": int(scores["positions"]),
        "parent_ppl": round(parent_ppl, 4),
        "ppl": round(ppl, 4),
        "ppl_delta_pct": round(100 * (ppl / parent_ppl - 1), 4),
        "top1_agreement": round(scores["top1_agreement"], 4),
        **made,
        "weight_bytes_ratio": round(made["weight_bytes"] / made["weight_bytes_fp32"], 4),
        "disk_bytes": on_disk,
        "fp32_bytes": fp32_bytes,
        "disk_bytes_ratio": round(on_disk / fp32_bytes, 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "runtime": speed.pop("runtime"),
        **{k: v for k, v in speed.items() if k.startswith("llama_cpp")},
        "parent_fwd_tokens_per_s": parent_speed["fwd_tokens_per_s"],
        "fwd_tokens_per_s": speed.get("fwd_tokens_per_s"),
        "fwd_speedup": _ratio(speed.get("fwd_tokens_per_s"), parent_speed["fwd_tokens_per_s"]),
        "parent_gen_tokens_per_s": parent_speed["gen_tokens_per_s"],
        "gen_tokens_per_s": speed.get("gen_tokens_per_s"),
        "gen_speedup": _ratio(speed.get("gen_tokens_per_s"), parent_speed["gen_tokens_per_s"]),
        "quantize_s": round(quantize_s, 3),
        "run_key": key,
    }
    lineage = Lineage(
        teacher=parent.info.teacher if parent.info else teacher_spec.path,
        tokens=parent.info.tokens if parent.info else [v.ref.key for v in tokens],
        logits=parent.info.logits if parent.info else [],
        config_hash=cfg.model_copy(update={"method": method}).config_hash(),
        parent=parent.key,
        flow_run_id=flow_run_id,
    )
    seconds = round(time.monotonic() - started, 3)
    try:
        info = publish(catalog, name, final, lineage, metrics, gate="quantized", gates=gates,
                       work=work)  # fmt: skip
    except GateFailed as e:
        failed = get_model(catalog, name).to_dict()  # the version just registered
        e.stage_result = {"parent": parent.key, "model": failed, "metrics": metrics}
        if metrics.get("file"):
            # the file stays (registered unpromoted); `export --json` names it as `path`
            e.stage_result["file"] = e.stage_result["path"] = str(
                Path(failed["path"]) / metrics["file"]
            )
        raise
    return QuantizeResult(parent.key, info.to_dict(), False, metrics, seconds)


def quantize_run_name() -> str:
    """`quantize nf4 news-student`: the task run's name in the Prefect UI."""
    from prefect.runtime import task_run

    p = task_run.parameters
    return f"quantize {p.get('method') or p['cfg'].method} {p['model_arg']}"


def _speeds(model: torch.nn.Module, blocks: Any, val: Any, cfg: QuantizeConfig) -> dict[str, float]:
    """Forward tokens/s on `speed_blocks` test blocks (after a warm-up pass) and greedy
    generation tokens/s, batch 1."""
    import torch

    device = next(model.parameters()).device
    ids = torch.from_numpy(blocks.input_ids[val[: cfg.speed_blocks]]).to(device)
    with torch.inference_mode():
        model(input_ids=ids[:1])
        t = time.perf_counter()
        model(input_ids=ids)
        fwd = ids.numel() / (time.perf_counter() - t)
    prompt = torch.from_numpy(blocks.input_ids[val[0], :16][None])
    gen = generation_speed(model, prompt, cfg.speed_tokens)
    return {"fwd_tokens_per_s": round(fwd, 1), "gen_tokens_per_s": round(gen, 1)}


def _ratio(x: float | None, parent: float) -> float | None:
    return round(x / parent, 3) if x is not None and parent > 0 else None


def _make_backend(
    fp32: torch.nn.Module, parent: Parent, qcfg: Any, final: Path, method: str
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A bitsandbytes / torchao / torch dynamic variant saved into `final` (before any
    forward: what is evaluated is what is saved), with its tokenizer."""
    t0 = time.monotonic()
    quantized = quantize(fp32, qcfg)
    quantize_s = time.monotonic() - t0
    wb = weight_bytes(quantized)
    if wb["layers"] == 0:
        raise QuantizeError(f"{method} quantized no layer of {parent.key}")
    save(quantized, qcfg, final)
    load_tokenizer(parent.spec).save_pretrained(str(final))
    return quantized, {
        "quantized_layers": wb["layers"],
        "weight_bytes": wb["quantized_bytes"],
        "weight_bytes_fp32": wb["fp32_bytes"],
        "quantize_s": quantize_s,
    }


@task(name="quantize-model", task_run_name=quantize_run_name, cache_policy=NO_CACHE)
def quantize_registered(
    model_arg: str,
    home: str,
    teacher: ModelSpec,
    cfg: QuantizeConfig,
    gates: GatesConfig,
    dataset: str | None = None,
    method: str | None = None,
) -> QuantizeResult:
    """Quantize, evaluate, register and gate a registered model or the teacher (see
    `quantize_model`); e.g. once per `cfg.methods` entry after a student is distilled."""
    return quantize_model(
        model_arg,
        Catalog(Path(home)),
        teacher,
        cfg,
        gates,
        dataset=dataset,
        method=method,
        flow_run_id=current_flow_run_id(),
    )
