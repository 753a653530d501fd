"""The cost model of docs/scale.md: per-stage cores or GPUs, hours and bytes for 10M, 1B and
100B documents with a 1B and an 8B teacher, computed from the inputs below (each with where it
comes from: a committed measurement of this repository, or a cited source). Arithmetic only.

    python -m bench.scale_model > bench/results/scale_model.txt
"""

from __future__ import annotations

# name: (value, source)
INPUTS: dict[str, tuple[float, str]] = {
    "bytes_per_doc": (3_717, "demo corpus (CNN/DailyMail), first 1,000 articles, measured"),
    "tokens_per_doc": (810, "the same articles, SmolLM2 tokenizer, measured"),
    "kept_share": (8_650 / 9_998, "README demo run: 8,650 of 9,998 articles kept"),
    "ingest_bytes_per_core_s": (552e6 / 5.4 / 2, "README bench.ingest: 552 MB in 5.4 s, 2 cores"),
    "near_docs_per_core_s": (
        400_000 / 103.6 / 2,
        "README bench.dedup: 400k docs, 103.6 s, 2 cores",
    ),
    "curate_docs_per_core_s": (
        9_998 / 102 / 2,
        "README demo: curate 102 s for 9,998, 2 cores (embedding-bound)",
    ),
    "gpu_bf16_peak_flops": (
        989e12,
        "NVIDIA H100 SXM datasheet: 989 TFLOPS dense BF16 (H200: the same)",
    ),
    "mfu_low": (
        504_083 * 2 * 134.5e6 / 989e12,
        "bench/results/gpu_logits_h100.txt: 135M forward, 504k tok/s",
    ),
    "mfu_high": (0.40, "Llama 3 paper (Dubey et al. 2024), Table 4: 38-43% BF16 MFU on H100"),
    "forward_flops_per_param_token": (2, "Kaplan et al. 2020, Sec. 2.1: forward ~ 2N FLOPs/token"),
    "train_flops_per_param_token": (6, "Kaplan et al. 2020: forward + backward ~ 6N FLOPs/token"),
    "student_share": (0.5, "the demo student holds 50.0% of the teacher's parameters (README)"),
    "tokens_per_student_param": (20, "Chinchilla (Hoffmann et al. 2022): ~20 tokens per parameter"),
    "sampled_bytes_per_token": (35.8, "README bench.logits: sampled S=24, 35.8 B/token"),
    "token_bytes_per_token": (5, "tokens snapshot: int32 id + uint8 loss mask (tasks/tokens)"),
    "minhash_bytes_per_doc": (
        464 + 16 * 18,
        "tasks/curate/minhash.py: 112 uint32 + 2 int64; 16 band rows of 18 B",
    ),
    "embed_bytes_per_doc": (384 * 4, "all-MiniLM-L6-v2: 384 float32"),
    "embed_params": (22.7e6, "all-MiniLM-L6-v2 model card: 22.7M parameters"),
    "embed_tokens_per_doc": (256, "dedup.semantic.max_seq_length default (tasks/curate/config.py)"),
}

DOCS = [10e6, 1e9, 100e9]
TEACHERS = [1e9, 8e9]


def v(name: str) -> float:
    return INPUTS[name][0]


def human(x: float, unit: str = "") -> str:
    for div, suffix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:,.1f} {suffix}{unit}".strip()
    return f"{x:,.1f} {unit}".strip()


def main() -> None:
    print("inputs:")
    for name, (value, source) in INPUTS.items():
        print(f"  {name:<30} {value:>14,.4g}   {source}")
    peak = v("gpu_bf16_peak_flops")

    print("\nCPU stages (core-hours; bytes uncompressed):")
    print(f"{'documents':>10} | {'text':>9} | ingest | near dedup | curate w/ embed (CPU) | "
          "embed on GPU (GPU-h, MFU low-high) | minhash + embeddings bytes")  # fmt: skip
    for d in DOCS:
        text = d * v("bytes_per_doc")
        ingest_h = text / v("ingest_bytes_per_core_s") / 3600
        near_h = d / v("near_docs_per_core_s") / 3600
        curate_h = d / v("curate_docs_per_core_s") / 3600
        embed_flops = 2 * v("embed_params") * v("embed_tokens_per_doc") * d
        gpu_lo = embed_flops / (peak * v("mfu_high")) / 3600
        gpu_hi = embed_flops / (peak * v("mfu_low")) / 3600
        side = d * (v("minhash_bytes_per_doc") + v("embed_bytes_per_doc"))
        print(
            f"{human(d):>10} | {human(text, 'B'):>9} | {ingest_h:,.1f} | {near_h:,.0f} | "
            f"{curate_h:,.0f} | {gpu_lo:,.1f}-{gpu_hi:,.1f} | {human(side, 'B')}"
        )

    print("\nGPU stages (GPU-hours at MFU high-low; tokens = kept tokens, capped at the")
    print("student's Chinchilla budget; bytes: tokens + sampled logits):")
    print(f"{'documents':>10} | teacher | student | kept tokens | distilled tokens | "
          "teacher forward GPU-h | student training GPU-h | tokens + logits bytes")  # fmt: skip
    for d in DOCS:
        kept = d * v("kept_share") * v("tokens_per_doc")
        for n in TEACHERS:
            student = n * v("student_share")
            budget = min(kept, student * v("tokens_per_student_param"))
            fwd = v("forward_flops_per_param_token") * n * budget
            trn = v("train_flops_per_param_token") * student * budget
            f_lo, f_hi = (fwd / (peak * m) / 3600 for m in (v("mfu_high"), v("mfu_low")))
            t_lo, t_hi = (trn / (peak * m) / 3600 for m in (v("mfu_high"), v("mfu_low")))
            nbytes = budget * (v("token_bytes_per_token") + v("sampled_bytes_per_token"))
            print(
                f"{human(d):>10} | {human(n)} | {human(student)} | {human(kept)} | "
                f"{human(budget)} | {f_lo:,.0f}-{f_hi:,.0f} | {t_lo:,.0f}-{t_hi:,.0f} | "
                f"{human(nbytes, 'B')}"
            )


if __name__ == "__main__":
    main()
