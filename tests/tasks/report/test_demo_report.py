"""The demo report's distillation section: what the student is, the test articles with every
model's summary, and an empty or looping generation reported as a failure."""

from __future__ import annotations

from pathlib import Path

from tasks.report.demo import (
    distillation_section,
    quantization_section,
    summaries_line,
    summary_failures,
)

LOOP = 'The spokesman said, "The spokesman said, "The spokesman said, "The spokesman said,'


def _metrics(student_empty: int, student_looping: int = 0) -> dict:
    examples = [
        {"article": f"Article {i} about the court .", "reference": f"human {i}",
         "teacher": f"teacher {i}", "student": "" if i == 0 and student_empty else f"student {i}"}
        for i in range(3)
    ]  # fmt: skip
    if student_looping:
        examples[1]["student"] = LOOP
    return {
        "teacher_ppl": 30.0, "student_ppl": 60.0, "top1_agreement": 0.5,
        "teacher_params": 1000, "student_params": 400, "param_share": 0.4,
        "teacher_tokens_per_s": 10.0, "student_tokens_per_s": 20.0,
        "train_steps": 5, "train_tokens": 5120, "summary_blocks": 2,
        "student": {"kind": "depth", "method": "span", "layers": [0, 1, 5]}, "layers": [0, 1, 5],
        "hidden_weight": 1.0, "relation_weight": 1.0,
        "rouge_pairs": 24, "student_rouge_l": 0.2, "teacher_rouge_l": 0.25,
        "student_empty_summaries": student_empty, "teacher_empty_summaries": 0,
        "student_looping_summaries": student_looping, "teacher_looping_summaries": 0,
        "examples": examples,
    }  # fmt: skip


def test_an_empty_student_summary_is_a_failure_in_the_report(tmp_path: Path) -> None:
    kd = {"model": {"key": "cnn-student@1", "metrics": _metrics(student_empty=2)}}
    text = "\n".join(distillation_section(kd, None, tmp_path))
    assert "**FAILURE: the KD student wrote nothing for 2 of 24 test articles.**" in text
    assert "- KD student: **(empty: FAILURE, nothing written)**" in text
    assert "| **2 (FAILURE)** | 0 |" in text  # the table's empty and looping columns
    for i in range(3):  # three articles, each with the human, teacher and student summary
        assert f"- human: human {i}" in text and f"- teacher: teacher {i}" in text
    assert "depth pruning (method span; teacher layers [0, 1, 5]), 40% of the teacher's" in text
    assert "(2 blocks of teacher-written summaries among them)" in text
    assert "CE-only reference: not run (`llm4all demo --reference`)" in text
    assert (tmp_path / "perplexity.png").stat().st_size > 1000
    assert summaries_line(kd["model"]["metrics"]).endswith("0.200 vs teacher 0.250 (0.80x); empty summaries: 2, looping: 0")  # fmt: skip


def test_a_looping_student_summary_is_a_failure_in_the_report(tmp_path: Path) -> None:
    ev = _metrics(student_empty=0, student_looping=5)
    text = "\n".join(distillation_section({"model": {"key": "s@1", "metrics": ev}}, None, tmp_path))
    assert "**FAILURE: the KD student's summary loops (repeats itself) for 5 of 24 test articles.**" in text  # fmt: skip
    assert "| 0 | **5 (FAILURE)** |" in text
    assert f"- KD student: {LOOP} **(loops: FAILURE, repeated 5-grams cover" in text
    assert "- KD student: student 0\n" in text + "\n"  # a summary that does not loop: as it is
    assert summaries_line(ev).endswith("empty summaries: 0, looping: 5")


def test_no_failure_line_when_every_summary_has_text(tmp_path: Path) -> None:
    ev = _metrics(student_empty=0)
    assert summary_failures(ev) == ""
    text = "\n".join(distillation_section({"model": {"key": "s@1", "metrics": ev}}, None, tmp_path))
    assert "FAILURE" not in text and "- KD student: student 0" in text


def _variant(method: str, bits: int, disk: int, delta: float, **speed: object) -> dict:
    metrics = {
        "method": method, "bits": bits, "eval_blocks": 16, "disk_bytes": disk,
        "fp32_bytes": 269_000_000, "disk_bytes_ratio": round(disk / 269_000_000, 4),
        "weight_bytes_ratio": 0.17, "ppl_delta_pct": delta, **speed,
    }  # fmt: skip
    key = f"s-{method}@1"
    return {"parent": "s@1", "metrics": metrics, "model": {"key": key, "gate_passed": delta < 5}}


def test_quantization_section_shows_bytes_on_disk_and_a_dash_for_an_untimed_runtime(
    tmp_path: Path,
) -> None:
    results = [
        _variant("gguf-q5_0", 5, 48_060_471, 0.62, runtime="llama.cpp (llama-cpp-python 0.3)",
                 fwd_speedup=0.73, gen_speedup=6.45),
        _variant("gguf-q8_0", 8, 73_280_000, -0.02,
                 runtime="transformers (dequantized); llama-cpp-python is not installed",
                 fwd_speedup=None, gen_speedup=None),
        {"method": "nf4", "error": "bitsandbytes has no CPU kernel"},
    ]  # fmt: skip
    text = "\n".join(quantization_section(results, tmp_path))
    assert "| gguf-q5_0 | 5 | 48.1 (fp32 269.0) | 0.18 | +0.62% | llama.cpp (llama-cpp-python 0.3) | 0.73 | 6.45 | passed |" in text  # fmt: skip
    assert "| gguf-q8_0 | 8 | 73.3 (fp32 269.0) | 0.27 | -0.02% | transformers (dequantized) | — | — | passed |" in text  # fmt: skip
    assert "- not run: nf4: bitsandbytes has no CPU kernel" in text
    assert (tmp_path / "quantization.png").stat().st_size > 1000
