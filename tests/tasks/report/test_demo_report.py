"""The demo report's distillation section: what the student is, the test articles with every
model's summary, and an empty generation reported as a failure."""

from __future__ import annotations

from pathlib import Path

from tasks.report.demo import distillation_section, summaries_line, summary_failures


def _metrics(student_empty: int) -> dict:
    examples = [
        {"article": f"Article {i} about the court .", "reference": f"human {i}",
         "teacher": f"teacher {i}", "student": "" if i == 0 and student_empty else f"student {i}"}
        for i in range(3)
    ]  # fmt: skip
    return {
        "teacher_ppl": 30.0, "student_ppl": 60.0, "top1_agreement": 0.5,
        "teacher_params": 1000, "student_params": 400, "param_share": 0.4,
        "teacher_tokens_per_s": 10.0, "student_tokens_per_s": 20.0,
        "train_steps": 5, "train_tokens": 5120, "summary_blocks": 2,
        "student": {"kind": "depth", "method": "span", "layers": [0, 1, 5]}, "layers": [0, 1, 5],
        "hidden_weight": 1.0, "relation_weight": 1.0,
        "rouge_pairs": 24, "student_rouge_l": 0.2, "teacher_rouge_l": 0.25,
        "student_empty_summaries": student_empty, "teacher_empty_summaries": 0,
        "examples": examples,
    }  # fmt: skip


def test_an_empty_student_summary_is_a_failure_in_the_report(tmp_path: Path) -> None:
    kd = {"model": {"key": "cnn-student@1", "metrics": _metrics(student_empty=2)}}
    text = "\n".join(distillation_section(kd, None, tmp_path))
    assert "**FAILURE: the KD student wrote nothing for 2 of 24 test articles.**" in text
    assert "- KD student: **(empty: FAILURE, nothing written)**" in text
    assert "**2 (FAILURE)**" in text  # the table's empty-summaries column
    for i in range(3):  # three articles, each with the human, teacher and student summary
        assert f"- human: human {i}" in text and f"- teacher: teacher {i}" in text
    assert "depth pruning (method span; teacher layers [0, 1, 5]), 40% of the teacher's" in text
    assert "(2 blocks of teacher-written summaries among them)" in text
    assert "CE-only reference: not run (`llm4all demo --reference`)" in text
    assert (tmp_path / "perplexity.png").stat().st_size > 1000
    assert summaries_line(kd["model"]["metrics"]).endswith("0.200 vs teacher 0.250 (0.80x); empty summaries: 2")  # fmt: skip


def test_no_failure_line_when_every_summary_has_text(tmp_path: Path) -> None:
    ev = _metrics(student_empty=0)
    assert summary_failures(ev) == ""
    text = "\n".join(distillation_section({"model": {"key": "s@1", "metrics": ev}}, None, tmp_path))
    assert "FAILURE" not in text and "- KD student: student 0" in text
