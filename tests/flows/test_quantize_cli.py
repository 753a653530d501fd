"""`llm4all quantize`: one JSON object, exit codes, lineage in status."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from flows.cli import app
from tests.helpers import news_docs, write_jsonl

runner = CliRunner()


def _json(result) -> dict:
    out = result.stdout.strip()
    assert out.count("\n") == 0, f"stdout must hold exactly one JSON object, got:\n{out}"
    return json.loads(out)


def test_quantize_command(prefect_harness: None, home: Path, tmp_path: Path) -> None:
    from tests.tiny import make_tiny_llama

    teacher = make_tiny_llama(tmp_path / "teacher", hidden_size=64)
    src = write_jsonl(tmp_path / "news.jsonl", news_docs(40))
    assert runner.invoke(app, ["ingest", str(src), "-d", "news"]).exit_code == 0
    common = ["--set", f"teacher.path={teacher}", "--set", "tokens.block_size=16"]
    common += ["--set", "tokens.validation_share=0.2", "--set", "quantize.speed_tokens=2"]
    r = runner.invoke(app, ["cache-logits", "-d", "news", *common, "--set", "logits.samples=8"])
    assert r.exit_code == 0, r.stderr

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
    assert f"torchao-int8: {m['metrics']['weight_bytes_ratio']:.2f}x weight bytes" in lineage
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
