"""What each command prints for a person (without `--json`): a few aligned lines per result."""

from __future__ import annotations

from typing import Any

from flows.cli.app import say

GATE_WORD = {True: "passed", False: "FAILED", None: "pending"}


def ingest(out: dict[str, Any]) -> None:
    ref = out["ref"]
    where = f"raw/{out['dataset']}@{ref['version']}" if ref else "no new version (nothing new)"
    say(f"ingested {out['source']} -> {where} in {out['seconds']:.1f} s")
    say(f"  rows in          {out['rows_in']:>10,}")
    say(f"  accepted         {out['accepted']:>10,}")
    say(f"  already present  {out['already_present']:>10,}")
    say(f"  quarantined      {out['quarantined']:>10,}")
    if out["blank_lines"]:
        say(f"  (blank lines skipped: {out['blank_lines']:,})")
    for q in out["quarantine_examples"]:
        say(f"    line {q['line']}: {q['reason']}")
    if out["quarantined"] > len(out["quarantine_examples"]):
        rest = out["quarantined"] - len(out["quarantine_examples"])
        say(f"    ... and {rest:,} more: llm4all quarantine {out['dataset']}")
    gate = out.get("gate")
    if gate:
        say(f"gate raw: passed ({len(gate['expectations'])} expectations)")


def curate(out: dict[str, Any]) -> None:
    dataset = out["dataset"]
    if not out["versions"]:
        say(f"curate {dataset}: nothing to curate (no raw version waits for it)")
    for v in out["versions"]:
        st = v["stats"]
        say(
            f"curated {v['raw']} -> curated/{dataset}@{v['ref']['version']} in "
            f"{v['seconds']:.1f} s: {v['rows']:,} rows, {v['kept']:,} kept "
            f"({st['exact_dups']:,} exact, {st['near_dups']:,} near, "
            f"{st['semantic_dups']:,} semantic duplicates, {st['low_quality']:,} low quality, "
            f"{st['empty']:,} empty)"
        )
        if v.get("report"):
            dropped = ", ".join(f"{k} {n:,}" for k, n in v["report"]["funnel"]["dropped"].items())
            say(f"  dropped: {dropped or 'none'}; funnel: {v['report']['markdown']}")
        _factuality(v.get("factuality"))


def score(out: dict[str, Any]) -> None:
    st = out["stats"]
    say(
        f"scored {out['rows']:,} rows of {out['input']} -> {out['output']} in "
        f"{out['seconds']:.1f} s [{','.join(out['filters']) or 'no filters'}]: "
        f"{out['kept']:,} kept, {st['exact_dups']:,} exact, {st['near_dups']:,} near, "
        f"{st['semantic_dups']:,} semantic duplicates, {st['empty']:,} empty, "
        f"{out['invalid_rows']:,} unreadable"
    )
    _factuality(out.get("factuality"))


def _factuality(info: dict[str, Any] | None) -> None:
    """Which factuality scorer ran (a model, or the stated fallback) and its notes."""
    if info:
        notes = ", ".join(f"{n:,} {k.replace('_', ' ')}" for k, n in info["notes"].items())
        say(f"  factuality: {info['scorer']}" + (f" ({notes})" if notes else ""))


def calibrate(out: dict[str, Any]) -> None:
    say(
        f"{out['scorer']} (prefix {out.get('prefix', '')!r}) on {out['scored']:,} human texts of "
        f"{out['reference']} "
        f"({out['too_short']:,} too short to score): threshold {out['threshold']:.4f} "
        f"leaves {out['human_above']:,} above it (target {out['target_fpr']:g})"
    )
    lo, hi = out["fpr_interval_90"]
    say(f"its false-positive rate on new text like this: 90% sure between {lo:.2%} and "
        f"{hi:.2%} (more texts narrow it)")  # fmt: skip
    if out["written"] is not None:
        say(f"wrote dedup.mgt.threshold to {out['written']}")
    else:
        say("put this into your config (or rerun with --write CONFIG):")
        say(out["yaml"].rstrip())


def logits(out: dict[str, Any]) -> None:
    tok, lg = out["tokens"], out["logits"]
    for r in tok["refs"]:
        say(f"tokens {r['stage']}/{r['name']}@{r['version']}: {r['rows']:,} blocks")
    if tok["skipped"]:
        say(f"already tokenized: {', '.join(tok['skipped'])}")
    for key, left in (tok.get("over_budget") or {}).items():
        say(f"over tokens.max_documents: {left:,} documents of {key} left for the next run")
    for r in lg["refs"]:
        say(f"logits {r['stage']}/{r['name']}@{r['version']}: {r['rows']:,} positions")
    if lg["refs"]:
        say(f"  {lg['bytes_per_token']} bytes/token, {lg['seconds']:.1f} s")
    if lg["skipped"]:
        say(f"already cached: {', '.join(lg['skipped'])}")


def distill(out: dict[str, Any]) -> None:
    m = out["model"]
    if out["skipped"]:
        say(
            f"{m['key']} already holds this run (gate {GATE_WORD[m['gate_passed']]}): nothing to do"
        )
        return
    ev, tr = out["evaluation"], out["train"]
    say(f"registered {m['key']} ({m['path']})")
    say(f"  trained {tr['steps']} steps, {tr['tokens']:,} tokens, {tr['s_per_step']} s/step")
    say(
        f"  held-out ppl {ev['student_ppl']:.2f} vs teacher {ev['teacher_ppl']:.2f} "
        f"(x{ev['ppl_ratio']}), top-1 agreement {ev['top1_agreement']:.1%}"
    )
    say(
        f"  {ev['student_params']:,} params ({ev['param_share']:.0%} of the teacher), "
        f"{ev['student_tokens_per_s']:.0f} tok/s vs {ev['teacher_tokens_per_s']:.0f}"
    )
    say(f"gate student: {'passed' if m['gate_passed'] else 'FAILED'}")


def quantize(out: dict[str, Any]) -> None:
    m = out["model"]
    gate = GATE_WORD[m["gate_passed"]]
    if out["skipped"]:
        say(f"{m['key']} already holds this run (gate {gate}): nothing to do")
        return
    x = out["metrics"]
    say(f"registered {m['key']} <- {out['parent']} ({x['method']}, {x['bits']}-bit, {x['device']})")
    rows = [
        ("weight bytes", f"{x['weight_bytes']:,}", f"{x['weight_bytes_fp32']:,}",
         f"{x['weight_bytes_ratio']:.3f}x"),
        ("bytes on disk", f"{x['disk_bytes']:,}", f"{x['fp32_bytes']:,}",
         f"{x['disk_bytes_ratio']:.3f}x"),
        ("held-out ppl", f"{x['ppl']:.3f}", f"{x['parent_ppl']:.3f}",
         f"{x['ppl_delta_pct']:+.2f}%"),
    ]  # fmt: skip
    if "llama_cpp_ppl" in x:
        rows.append(("llama.cpp ppl", f"{x['llama_cpp_ppl']:.3f}", f"{x['parent_ppl']:.3f}",
                     f"{x['llama_cpp_ppl_delta_pct']:+.2f}%"))  # fmt: skip
    for label, key, parent in (("forward tok/s", "fwd_tokens_per_s", "parent_fwd_tokens_per_s"),
                               ("generate tok/s", "gen_tokens_per_s", "parent_gen_tokens_per_s")):  # fmt: skip
        if x.get(key) is not None:
            rows.append(
                (label, f"{x[key]:,.1f}", f"{x[parent]:,.1f}", f"{x[key] / x[parent]:.2f}x")
            )
    say(f"  {'':<15} {'quantized':>14} {'fp32':>14} {'ratio':>9}")
    for label, q, f, r in rows:
        say(f"  {label:<15} {q:>14} {f:>14} {r:>9}")
    if "tensor_types" in x:
        types = ", ".join(f"{k} x{v}" for k, v in sorted(x["tensor_types"].items()))
        say(f"  tensors: {types}; calibration {x['calibration']}")
    say(f"  speed: {x.get('runtime', 'pytorch')}")
    say(f"  peak RSS {x['peak_rss_mb']:,.0f} MB; {x['eval_blocks']} blocks of {x['dataset']}")
    say(f"gate quantized: {gate}")


def export(out: dict[str, Any]) -> None:
    quantize(out)
    say(f"file: {out['path']}")


def stages(out: dict[str, Any]) -> None:
    """One line per stage of a pipeline, refresh or demo run."""
    from tasks.report.markdown import stage_summaries

    for stage, summary in stage_summaries(out):
        say(f"{stage:<8} {summary}")


def refresh(out: dict[str, Any]) -> None:
    stages(out)
    say(f"promoted: {out['refresh']['promoted']}")


def demo(out: dict[str, Any]) -> None:
    stages(out)
    say(f"\nreport: {out['report']['report']}")
    for line in out["report"]["summary"]:
        say(f"  {line}")


def ablation(out: dict[str, Any]) -> None:
    say(f"report: {out['report']['report']}")
    for line in out["report"]["summary"]:
        say(f"  {line}")


def status(out: dict[str, Any]) -> None:
    say(f"warehouse: {out['home']}")
    if not out["datasets"]:
        say("  (empty: try `llm4all ingest FILE --dataset NAME`)")
        return
    unit = {"tokens": "blocks", "logits": "positions"}
    for d in out["datasets"]:
        rows = unit.get(d["stage"], "rows")
        say(f"{d['stage']}/{d['name']}  ({d['rows']:,} {rows} in versions that passed)")
        for v in d["versions"]:
            say(
                f"  v{v['version']:<3} {v['rows']:>10,} {rows:<9} "
                f"gate {GATE_WORD[v['gate_passed']]:<7}"
                f"  {v['created_at'][:19].replace('T', ' ')}  parent {v['parent'] or '-'}"
            )
    for m in out["models"]:
        say(
            f"model {m['key']}{' (promoted)' if m['promoted'] else ''}  "
            f"gate {GATE_WORD[m['gate_passed']]}  {model_figure(m['metrics'])}  "
            f"parent {m['parent']}  tokens {','.join(m['tokens'])}  "
            f"logits {','.join(m['logits']) or '-'}"
        )
        decision = m["metrics"].get("refresh")
        if decision:
            verdict = "promoted" if decision["promote"] else "kept the parent"
            say(f"    refresh: {verdict}: {decision['reason']}")
    for name, s in (out.get("settings") or {}).items():
        source = s["config_path"] or "the defaults"
        say(f"settings of {name}: {source} + {len(s['overrides'])} override(s), recorded "
            f"{str(s['recorded_at'])[:19]}")  # fmt: skip
    runs = out["ingest_runs"]
    if runs:
        say("recent ingest runs (rows in = accepted + already present + quarantined):")
        for r in runs[-5:]:
            made = f"v{r['version']}" if r["version"] is not None else "no version"
            say(
                f"  {str(r['started_at'])[:19]}  {r['dataset']:<16} {r['rows_in']:>9,} = "
                f"{r['accepted']:,} + {r['already_present']:,} + {r['quarantined']:,}"
                f"  -> {made}"
            )


def model_figure(metrics: dict[str, Any]) -> str:
    """A registered model's headline figure: a student's perplexity against its teacher, a
    quantized variant's size and perplexity change against its fp32 parent, a factuality
    model's gate AUROC."""
    if "gate_auroc" in metrics:
        return f"factuality: gate AUROC {metrics['gate_auroc']:.3f} on held-out synthetic pairs"
    if "ppl_delta_pct" in metrics:
        ratio = metrics.get("disk_bytes_ratio", metrics.get("weight_bytes_ratio"))
        return (
            f"{metrics['method']}: {ratio:.3f}x bytes on disk, "
            f"ppl {metrics['ppl_delta_pct']:+.2f}% vs the parent"
        )
    return f"ppl x{metrics.get('ppl_ratio')} of the teacher"


def quarantine(out: dict[str, Any]) -> None:
    for r in out["rows"]:
        say(f"{r['source']}:{r['line']}  {r['reason']}  | {r['excerpt'][:80]!r}")
    if not out["rows"]:
        say(f"nothing quarantined for {out['dataset']}")
