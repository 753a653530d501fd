"""Post-training weight quantization of a causal LM, one small interface over four libraries.

    quantize(model, QuantConfig) -> a new, quantized model (the fp32 one is left as it was)
    save(model, cfg, folder)     -> safetensors + config.json + quantization.json
    load(folder)                 -> the quantized model again, bit for bit

Backends (`QuantConfig.method`, models/quant_config.py):
  int8           bitsandbytes LLM.int8: int8 weights with a per-row scale, outlier activation
                 columns in 16-bit (runs on CPU in bitsandbytes >= 0.48, needs `accelerate`)
  nf4            bitsandbytes 4-bit NormalFloat, blocks of 64, double quantization of the scales
                 (a layer whose input size is no multiple of 64 stays fp32: the CPU kernel
                 cannot run it)
  torchao-int8   torchao weight-only int8 (per-row scale)
  torchao-int4   torchao weight-only int4 in groups (`group_size`). On a CPU, torchao 0.18 has
                 no packed int4 layout (its packed kernels need CUDA, mslk, or Arm KleidiAI), so
                 the 4-bit values are stored one per int8 byte: 4-bit accuracy, 8-bit size.
  dynamic-int8   torch dynamic quantization (CPU only): int8 weights per output channel,
                 activations quantized per batch at run time. HF Conv1D layers (GPT-2) are
                 turned into nn.Linear first, or only the head would be quantized.
  gguf-*         one GGUF file in GGML blocks, embeddings included (models/gguf_quant.py:
                 `write_variant` makes it, from calibration blocks; `load` here reads it back
                 through transformers, dequantized). llama.cpp, ollama and LM Studio run it.

bitsandbytes and torchao go through transformers' own integrations (BitsAndBytesConfig,
TorchAoConfig): the model is written to a temporary folder and loaded back quantized, so any
model `save_pretrained` can write (the GGUF teacher included) can be quantized, and the saved
result loads with plain `AutoModelForCausalLM.from_pretrained` too. Linear layers only: the
embeddings stay full precision, and so does the head (`skip_modules`, default lm_head), which
is often tied to them.
"""

from __future__ import annotations

import copy
import json
import logging
import tempfile
import warnings
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.quant_config import METHODS, QuantConfig, QuantError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

__all__ = [
    "METHODS",
    "QuantConfig",
    "QuantError",
    "available",
    "conv1d_to_linear",
    "device_of",
    "disk_bytes",
    "load",
    "quantize",
    "save",
    "saved_config",
    "weight_bytes",
]

QUANT_FILE = "quantization.json"
NF4_BLOCK = 64  # weights per bitsandbytes 4-bit block
_DYNAMIC_FORMAT = "llm4all-dynamic-int8/1"

log = logging.getLogger(__name__)


def device_of(cfg: QuantConfig) -> str:
    """cfg.device; by default CUDA when present, except for dynamic-int8 (CPU only)."""
    import torch

    if cfg.device:
        return cfg.device
    return "cuda" if torch.cuda.is_available() and cfg.backend != "torch" else "cpu"


def _quiet() -> None:
    """bitsandbytes warns on every CPU int8 matmul; torchao logs each optional kernel library
    it cannot load (CUDA builds) at import. Neither is actionable here."""
    warnings.filterwarnings("ignore", message=".*quantize_dynamic.*")
    warnings.filterwarnings("ignore", message=".*torch.ao.quantization.*")
    warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
    logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)
    logging.getLogger("torchao").setLevel(logging.ERROR)


def available(method: str, device: str = "cpu") -> str | None:
    """None when `method` can run on `device` here; otherwise the one-line reason."""
    if method not in METHODS:
        return f"unknown quantization method {method!r}; expected one of {', '.join(METHODS)}"
    _quiet()
    backend = QuantConfig(method=method).backend
    if backend == "gguf":
        if find_spec("gguf") is None:
            return f"{method} needs the gguf package (pip install gguf)"
    elif backend == "bitsandbytes":
        if find_spec("accelerate") is None:
            return f"{method} needs accelerate (transformers' bitsandbytes loader): pip install accelerate"
        try:
            import bitsandbytes  # noqa: F401
        except Exception as e:
            return f"{method} needs bitsandbytes, which cannot load here: {_line(e)}"
    elif backend == "torchao":
        try:
            import torchao  # noqa: F401
        except Exception as e:
            return f"{method} needs torchao (pip install 'llm4all[quant]'): {_line(e)}"
    else:
        import torch

        if not device.startswith("cpu"):
            return f"{method} runs on CPU only (torch dynamic quantization), not {device}"
        if not set(torch.backends.quantized.supported_engines) & {"x86", "fbgemm", "qnnpack"}:
            return f"{method}: this torch build has no quantized CPU engine"
    return None


def _line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _check(cfg: QuantConfig, device: str) -> None:
    reason = available(cfg.method, device)
    if reason:
        raise QuantError(reason)


# --------------------------------------------------------------------------- quantize
def quantize(model: PreTrainedModel, cfg: QuantConfig) -> PreTrainedModel:
    """A quantized copy of `model` (a transformers causal LM), in eval mode on cfg.device.

    Raises QuantError (one line) when the method cannot run on this platform or fails."""
    device = device_of(cfg)
    _check(cfg, device)
    if cfg.backend == "gguf":
        raise QuantError(f"{cfg.method} writes a file: models/gguf_quant.write_variant")
    try:
        if cfg.backend == "torch":
            return _dynamic(model, cfg)
        return _via_transformers(model, cfg, device)
    except QuantError:
        raise
    except Exception as e:
        raise QuantError(f"{cfg.method} failed on {device}: {_line(e)}") from e


def _hf_config(cfg: QuantConfig, model: torch.nn.Module) -> Any:
    import torch

    if cfg.method in ("int8", "nf4"):
        from transformers import BitsAndBytesConfig

        if cfg.method == "int8":
            return BitsAndBytesConfig(
                load_in_8bit=True,
                llm_int8_threshold=cfg.int8_threshold,
                llm_int8_skip_modules=list(cfg.skip_modules),
            )
        # bitsandbytes' CPU 4-bit kernels need whole blocks of 64 inputs: other layers stay fp32
        odd = [
            n
            for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and m.in_features % NF4_BLOCK
        ]
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=cfg.double_quant,
            bnb_4bit_compute_dtype=getattr(torch, cfg.compute_dtype),
            llm_int8_skip_modules=[*cfg.skip_modules, *odd],
        )
    from torchao.quantization import Int8WeightOnlyConfig, IntxWeightOnlyConfig
    from torchao.quantization.granularity import PerGroup
    from transformers import TorchAoConfig

    if cfg.method == "torchao-int8":
        ao = Int8WeightOnlyConfig()
    else:  # the layout every device runs (see the module docstring)
        ao = IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(cfg.group_size))
    return TorchAoConfig(ao, modules_to_not_convert=list(cfg.skip_modules))


def _plain(model: PreTrainedModel) -> PreTrainedModel:
    """`model`, or a plain fp32 copy of it when transformers still flags it as quantized (a
    GGUF teacher is dequantized on load but may be neither saved nor cast as it is)."""
    if getattr(model, "hf_quantizer", None) is None and not hasattr(
        model.config, "quantization_config"
    ):
        return model
    from models.student import trainable

    return trainable(model).eval()


def _via_transformers(model: PreTrainedModel, cfg: QuantConfig, device: str) -> PreTrainedModel:
    import torch
    from transformers import AutoModelForCausalLM

    model = _plain(model)
    with tempfile.TemporaryDirectory(prefix="llm4all-quant-") as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        q = AutoModelForCausalLM.from_pretrained(
            tmp,
            quantization_config=_hf_config(cfg, model),
            device_map=device,
            dtype=torch.float32,
        )
    return q.eval()


def _skipped(name: str, cfg: QuantConfig) -> bool:
    return any(name == s or name.endswith("." + s) for s in cfg.skip_modules)


def conv1d_to_linear(model: torch.nn.Module) -> torch.nn.Module:
    """Replace transformers' Conv1D (GPT-2 style, weight stored (in, out)) by the equivalent
    nn.Linear, in place; returns the model. Models without Conv1D are left untouched."""
    import torch
    from transformers.pytorch_utils import Conv1D

    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, Conv1D):
                n_in, n_out = child.weight.shape
                lin = torch.nn.Linear(n_in, n_out, device=child.weight.device)
                with torch.no_grad():
                    lin.weight.copy_(child.weight.t())
                    lin.bias.copy_(child.bias)
                setattr(parent, child_name, lin)
    return model


def _dynamic_spec(model: torch.nn.Module, cfg: QuantConfig) -> dict[str, Any]:
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig

    return {
        name: per_channel_dynamic_qconfig
        for name, m in model.named_modules()
        if type(m) is torch.nn.Linear and not _skipped(name, cfg)
    }


def _dynamic(model: PreTrainedModel, cfg: QuantConfig) -> PreTrainedModel:
    from torch.ao.quantization import quantize_dynamic

    plain = _plain(model)
    m = plain if plain is not model else copy.deepcopy(model)
    m = conv1d_to_linear(m.cpu().float().eval())
    spec = _dynamic_spec(m, cfg)
    if not spec:
        raise QuantError(f"{cfg.method}: the model has no Linear layer to quantize")
    import torch

    return quantize_dynamic(m, spec, dtype=torch.qint8, inplace=True).eval()


# --------------------------------------------------------------------------- bytes
def _kind(module: torch.nn.Module) -> str | None:
    """Which backend quantized this module (None: a full-precision module)."""
    import torch

    name = type(module).__name__
    if name in ("Linear8bitLt", "Linear4bit"):
        return "bitsandbytes"
    if isinstance(module, torch.ao.nn.quantized.dynamic.Linear):
        return "torch"
    if isinstance(module, torch.nn.Linear):
        w = module.weight
        if type(w).__name__ not in ("Parameter", "Tensor") and hasattr(w, "__tensor_flatten__"):
            return "torchao"
    return None


def _module_bytes(module: torch.nn.Module, kind: str) -> int:
    if kind == "bitsandbytes":  # int8/uint8 weight + SCB or absmax/quant_map/nested stats
        return sum(
            v.numel() * v.element_size()
            for k, v in module.state_dict().items()
            if k != "bias" and hasattr(v, "element_size")
        )
    if kind == "torchao":
        w = module.weight
        names, _ = w.__tensor_flatten__()
        return sum(getattr(w, n).numel() * getattr(w, n).element_size() for n in names)
    qw = module.weight()
    if qw.qscheme() in (_per_channel_affine(), _per_channel_symmetric()):
        extra = qw.q_per_channel_scales().nbytes + qw.q_per_channel_zero_points().nbytes
    else:
        extra = 16  # one float64 scale, one int64 zero point
    return qw.int_repr().nbytes + extra


def _per_channel_affine() -> Any:
    import torch

    return torch.per_channel_affine


def _per_channel_symmetric() -> Any:
    import torch

    return torch.per_channel_symmetric


def weight_bytes(model: torch.nn.Module) -> dict[str, int]:
    """Bytes of the quantized Linear layers' weights: as stored (quantized values plus their
    scales, zero points and quantization statistics; biases excluded) and as fp32 would
    store the same weights. `layers`: how many Linear layers are quantized."""
    layers = q_bytes = fp32 = 0
    for module in model.modules():
        kind = _kind(module)
        if kind is None:
            continue
        layers += 1
        q_bytes += _module_bytes(module, kind)
        fp32 += int(module.in_features) * int(module.out_features) * 4
    return {"layers": layers, "quantized_bytes": q_bytes, "fp32_bytes": fp32}


def disk_bytes(folder: str | Path) -> int:
    """Bytes of every file in a saved model folder (weights, config, tokenizer)."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


# --------------------------------------------------------------------------- save / load
def save(model: PreTrainedModel, cfg: QuantConfig, folder: str | Path) -> Path:
    """Write a quantized model to `folder` (safetensors; no pickle): transformers' own format
    for bitsandbytes and torchao, plain int8 tensors + scales for dynamic-int8.

    Save right after `quantize`, before running the model: on a CPU, bitsandbytes repacks
    4-bit weights for its kernel at the first inference forward, and such a model no longer
    saves (or saves what `load` does not reproduce bit for bit)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        if cfg.backend == "torch":
            _save_dynamic(model, folder)
        else:
            model.save_pretrained(str(folder), safe_serialization=True)
    except Exception as e:
        raise QuantError(f"cannot save the {cfg.method} model: {_line(e)}") from e
    meta = {
        "method": cfg.method,
        "bits": cfg.bits,
        "backend": cfg.backend,
        "config": cfg.model_dump(),
    }
    if cfg.backend == "torch":
        meta["format"] = _DYNAMIC_FORMAT
    (folder / QUANT_FILE).write_text(json.dumps(meta, indent=2))
    return folder


def saved_config(folder: str | Path) -> QuantConfig | None:
    """The QuantConfig a folder was saved with; None for a folder `save` did not write."""
    path = Path(folder) / QUANT_FILE
    if not path.exists():
        return None
    return QuantConfig.model_validate(json.loads(path.read_text())["config"])


def load(folder: str | Path, device: str | None = None) -> PreTrainedModel:
    """A model written by `save`, in eval mode (on `device`, default the saved config's)."""
    cfg = saved_config(folder)
    if cfg is None:
        raise QuantError(f"{folder} holds no quantized model ({QUANT_FILE} missing)")
    if device:
        cfg = cfg.model_copy(update={"device": device})
    dev = device_of(cfg)
    _check(cfg, dev)
    if cfg.backend == "gguf":
        from models.gguf_quant import load_variant

        return load_variant(folder, dev)
    if cfg.backend == "torch":
        return _load_dynamic(Path(folder), cfg)
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        str(folder), device_map=dev, dtype=torch.float32
    ).eval()


def _save_dynamic(model: torch.nn.Module, folder: Path) -> None:
    import torch
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    dynamic = {n for n, m in model.named_modules() if _kind(m) == "torch"}
    for name, module in model.named_modules():
        if name in dynamic:
            qw, bias = module._weight_bias()
            tensors[f"{name}.qweight"] = qw.int_repr().contiguous()
            tensors[f"{name}.scales"] = qw.q_per_channel_scales().contiguous()
            tensors[f"{name}.zero_points"] = qw.q_per_channel_zero_points().contiguous()
            if bias is not None:
                tensors[f"{name}.bias"] = bias.detach().contiguous()
    for key, t in model.state_dict().items():
        owner = key.rsplit(".", 1)[0]
        if (
            not isinstance(t, torch.Tensor)
            or owner in dynamic
            or owner.rsplit(".", 1)[0] in dynamic
        ):
            continue
        if t.data_ptr() in seen:  # tied weights (lm_head = embed_tokens): stored once
            continue
        seen.add(t.data_ptr())
        tensors[key] = t.detach().contiguous()
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": _DYNAMIC_FORMAT})
    model.config.save_pretrained(str(folder))
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(str(folder))


def _load_dynamic(folder: Path, cfg: QuantConfig) -> PreTrainedModel:
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM

    tensors = load_file(str(folder / "model.safetensors"))
    config = AutoConfig.from_pretrained(str(folder))
    skeleton = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model = _dynamic(skeleton, cfg)
    plain = {
        k: v for k, v in tensors.items() if not k.endswith((".qweight", ".scales", ".zero_points"))
    }
    for name, module in model.named_modules():
        if _kind(module) != "torch":
            continue
        plain.pop(f"{name}.bias", None)
        qw = torch._make_per_channel_quantized_tensor(
            tensors[f"{name}.qweight"], tensors[f"{name}.scales"], tensors[f"{name}.zero_points"], 0
        )
        module.set_weight_bias(qw, tensors.get(f"{name}.bias"))
    own = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    unexpected = [k for k in plain if k not in own]
    if unexpected:
        raise QuantError(f"{folder}: tensors this model does not have: {unexpected[:3]}")
    with torch.no_grad():
        for key, t in plain.items():
            own[key].copy_(t)
    model.tie_weights()
    return model.eval()
