"""`llm4all quantize`: one JSON object, exit codes, lineage in status."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from flows.cli import app
from tests.helpers import news_docs, write_jsonl

runner = CliRunner()


def _json(result) -> dict:
    out = result.stdout.strip()
    assert out.count("\n") == 0, f"stdout must hold exactly one JSON object, got:\n{out}"
    return json.loads(out)


def _news_with_cached_logits(tmp_path: Path, teacher: Path) -> list[str]:
    """Dataset `news` ingested and its teacher logits cached; the `--set` options used."""
    src = write_jsonl(tmp_path / "news.jsonl", news_docs(40))
    assert runner.invoke(app, ["ingest", str(src), "-d", "news"]).exit_code == 0
    common = ["--set", f"teacher.path={teacher}", "--set", "tokens.block_size=16"]
    common += ["--set", "tokens.validation_share=0.2", "--set", "quantize.speed_tokens=2"]
    r = runner.invoke(app, ["cache-logits", "-d", "news", *common, "--set", "logits.samples=8"])
    assert r.exit_code == 0, r.stderr
    return common


def test_quantize_command(prefect_harness: None, home: Path, tmp_path: Path) -> None:
    from tests.tiny import make_tiny_llama

    teacher = make_tiny_llama(tmp_path / "teacher", hidden_size=64)
    common = _news_with_cached_logits(tmp_path, teacher)

    args = ["quantize", "--model", "teacher", "-d", "news", *common]
    r = runner.invoke(app, [*args, "--method", "torchao-int8", "--json"])
    assert r.exit_code == 0, r.stderr
    out = _json(r)
    assert out["ok"] and not out["skipped"] and out["parent"] == str(teacher)
    assert out["model"]["key"] == "models/teacher-torchao-int8@1"
    assert out["model"]["gate_passed"] is True
    assert out["metrics"]["weight_bytes_ratio"] < 0.4 and "ppl_delta_pct" in out["metrics"]
    status = _json(runner.invoke(app, ["status", "--json"]))
    (m,) = status["models"]
    assert m["parent"] == str(teacher) and m["metrics"]["method"] == "torchao-int8"
    lineage = runner.invoke(app, ["status"]).stdout  # a variant's figure is against its parent
    assert f"torchao-int8: {m['metrics']['disk_bytes_ratio']:.3f}x bytes on disk" in lineage
    assert f"parent {teacher}" in lineage and "vs the parent" in lineage

    again = runner.invoke(app, [*args, "--method", "torchao-int8"])  # human output
    assert again.exit_code == 0 and "already holds this run" in again.stdout

    human = runner.invoke(app, [*args, "--method", "dynamic-int8"])
    assert human.exit_code == 0, human.stderr
    assert "registered models/teacher-dynamic-int8@1" in human.stdout
    assert "held-out ppl" in human.stdout and "gate quantized: passed" in human.stdout

    r = runner.invoke(app, [*args, "--method", "nf4", "--set",
                            "gates.quantized.max_ppl_delta_4bit=-50", "--json"])  # fmt: skip
    failed = _json(r)
    assert r.exit_code == 3 and failed["error"] == "gate_failed"
    assert failed["model"]["gate_passed"] is False and failed["metrics"]["bits"] == 4

    r = runner.invoke(app, [*args, "--method", "int3"])
    assert r.exit_code == 2 and "--method must be one of" in r.stderr
    cuda = ["--set", "quantize.device=cuda", "--set", "quantize.eval_blocks=2"]  # a new run
    r = runner.invoke(app, [*args, "--method", "dynamic-int8", *cuda])
    assert r.exit_code == 1 and r.stderr.strip().splitlines()[-1] == (
        "error: dynamic-int8 runs on CPU only (torch dynamic quantization), not cuda"
    )
    r = runner.invoke(app, ["quantize", "--model", "nope", *common, "--json"])
    assert r.exit_code == 1 and _json(r)["error"] == "QuantizeError"
    assert r.stderr.strip().splitlines()[-1].startswith("error: no model nope")


def test_export_command(prefect_harness: None, home: Path, tmp_path: Path) -> None:
    import gguf
    from transformers import AutoModelForCausalLM

    from models.ggml_blocks import quantize
    from tests.tiny import make_bpe_tokenizer_dir, make_tiny_llama

    teacher = make_tiny_llama(make_bpe_tokenizer_dir(tmp_path / "teacher"), hidden_size=64)
    common = _news_with_cached_logits(tmp_path, teacher)
    args = ["export", "--model", "teacher", "-d", "news", "--format", "gguf", *common]

    r = runner.invoke(app, [*args, "--type", "q8_0", "--json"])
    assert r.exit_code == 0, r.stderr
    out = _json(r)
    path = Path(out["path"])
    assert path.name == "model.gguf" and path.is_file()
    assert out["model"]["key"] == "models/teacher-gguf-q8_0@1" and out["model"]["gate_passed"]
    m = out["metrics"]
    assert m["method"] == "gguf-q8_0" and m["calibration"] == "rtn"
    assert m["disk_bytes"] >= path.stat().st_size and m["disk_bytes_ratio"] < 0.5
    assert abs(m["ppl_delta_pct"]) < 1.0  # 8-bit blocks on a random tiny model
    # the file, read back without llama.cpp: every 2-D tensor holds the reference Q8_0 codes
    fp32 = AutoModelForCausalLM.from_pretrained(str(teacher)).eval()
    tensors = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
    t = tensors["blk.1.ffn_down.weight"]
    assert t.tensor_type == gguf.GGMLQuantizationType.Q8_0
    want = quantize(fp32.model.layers[1].mlp.down_proj.weight.detach(), "q8_0", reference=True)
    got = gguf.quants.dequantize(t.data, t.tensor_type)
    assert np.array_equal(got, want.dequantize().numpy())
    assert tensors["token_embd.weight"].tensor_type == gguf.GGMLQuantizationType.Q8_0
    status = _json(runner.invoke(app, ["status", "--json"]))
    (reg,) = status["models"]
    assert reg["metrics"]["disk_bytes_ratio"] == m["disk_bytes_ratio"]
    assert "gguf-q8_0: " in runner.invoke(app, ["status"]).stdout
    again = runner.invoke(app, [*args, "--type", "q8_0", "--json"])  # from the catalog
    assert again.exit_code == 0 and _json(again)["path"] == out["path"] and _json(again)["skipped"]

    human = runner.invoke(app, [*args, "--type", "q4_0,mixed"])
    assert human.exit_code in (0, 3), human.stderr  # the 4-bit gate may fail a random model
    assert "tensors: " in human.stdout and "calibration gptq" in human.stdout
    assert f"file: {home}" in human.stdout and "teacher-gguf-q4_0-mixed" in human.stdout

    r = runner.invoke(app, [*args, "--type", "q4_1", "--json", "--set",
                            "gates.quantized.max_ppl_delta_4bit=-50"])  # fmt: skip
    failed = _json(r)
    assert r.exit_code == 3 and failed["error"] == "gate_failed", r.stderr
    assert Path(failed["path"]).is_file() and failed["model"]["gate_passed"] is False

    # bad input: one line, exit 2 (usage) or 1, and no file left behind
    before = sorted(p for p in home.rglob("*.gguf*"))
    for bad, code, line in (
        (["--type", "q3_k"], 2, "unsupported GGUF type 'q3_k'"),
        (["--type", "q8_0,mixed"], 2, "unsupported GGUF type"),
        (["--format", "onnx"], 2, "--format must be gguf"),
    ):
        r = runner.invoke(app, [*args, *bad])
        assert r.exit_code == code and line in r.stderr.strip().splitlines()[-1], r.stderr
    r = runner.invoke(app, ["export", "--model", "nope", *common, "--json"])
    assert r.exit_code == 1 and r.stderr.strip().splitlines()[-1].startswith("error: no model nope")
    words = make_tiny_llama(tmp_path / "words", hidden_size=64)  # a word-level tokenizer
    r = runner.invoke(app, [*args, "--type", "q8_0", "--set", f"teacher.path={words}"])
    assert r.exit_code == 1 and "GGUF export" in r.stderr.strip().splitlines()[-1], r.stderr
    assert sorted(p for p in home.rglob("*.gguf*")) == before
