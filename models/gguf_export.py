"""Write a transformers Llama-architecture causal LM as one GGUF file llama.cpp runs.

    export_gguf(model, tokenizer, path, plan, codes=None, metadata=None, reference=None)

plan: one type for every 2-D tensor, or {GGUF tensor name: type} ("*": the default), the
types being q8_0 | q5_1 | q5_0 | q4_1 | q4_0 (models/ggml_blocks.py) | f16 | f32; 1-D tensors
(the norms) are always F32, as llama.cpp's converter writes them. codes: {GGUF tensor name:
Quantized} chosen elsewhere (GPTQ, searched scales: models/gptq.py) in the HF row order,
written as they are instead of round-to-nearest (ggml_blocks.round_codes).

The layout is the one llama.cpp's convert_hf_to_gguf.py writes for LlamaForCausalLM: tensors
token_embd / blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm, ffn_gate, ffn_up,
ffn_down} / output_norm / output (absent when the head is tied to the embeddings), with the
rows of attn_q and attn_k permuted from HF's rotate-half order to GGML's interleaved RoPE order
(transformers' GGUF loader undoes it). The tokenizer goes in too: the GPT-2-style BPE
vocabulary, merges, token types, special token ids and the chat template. `tokenizer.ggml.pre`
names the pre-tokenizer llama.cpp must apply: taken from a reference GGUF with the identical
vocabulary (the teacher's: a tokenizer that transformers rebuilt from a GGUF lost the
original's digit splitting, so nothing else identifies it), else identified as llama.cpp does
(a hash of the token ids of a fixed probe text), else "gpt-2" for a plain byte-level BPE
(GPT-2's split pattern is what such a tokenizer applies).

The file is written to PATH.part and renamed at the end: a failure leaves no file behind.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.ggml_blocks import BLOCK, FORMATS, Quantized, round_codes
from models.quant_config import QuantError

GGML_FTYPE = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 7, "q5_0": 8, "q5_1": 9}
TYPES = ("q8_0", "q5_1", "q5_0", "q4_1", "q4_0", "f16", "f32")
GGUF_FILE = "model.gguf"

# llama.cpp's probe text for BPE pre-tokenizers (convert_hf_to_gguf.py, get_vocab_base_pre)
_CHKTXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis "
    "concatenated) ✅ 🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 "
    "កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ ------======= нещо на Български ''''''```````"
    "\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? 'M not sure I'll "
    "make it, 'D you like some tea? We'Ve a'lL"
)
_KNOWN_PRE = {  # sha256 of str(token ids of _CHKTXT) -> llama.cpp's pre-tokenizer name
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",
}
_LAYER_TENSORS = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


class ExportError(QuantError):
    """One line: why this model, tokenizer or type cannot be written as GGUF."""


# --------------------------------------------------------------------------- tensors
def gguf_name(hf_name: str) -> str | None:
    """The GGUF tensor name of a LlamaForCausalLM state-dict key (None: not a weight)."""
    if hf_name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf_name == "model.norm.weight":
        return "output_norm.weight"
    if hf_name == "lm_head.weight":
        return "output.weight"
    parts = hf_name.split(".")
    if parts[:2] != ["model", "layers"] or len(parts) < 4:
        return None
    rest = ".".join(parts[3:])
    return f"blk.{parts[2]}.{_LAYER_TENSORS[rest]}" if rest in _LAYER_TENSORS else None


def _rope_perm(rows: int, n_head: int) -> torch.Tensor:
    """The row order that turns HF's q/k rows (per head: the first halves of the rotary pairs,
    then the second halves) into GGML's (pairs adjacent): new[r] = old[perm[r]]."""
    idx = torch.arange(rows).reshape(n_head, 2, rows // n_head // 2)
    return idx.transpose(1, 2).reshape(rows)


def _rope_params(cfg: Any) -> dict[str, Any]:
    rp = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    return dict(rp)


def check_supported(model: torch.nn.Module) -> None:
    """ExportError (one line) unless `model` is a Llama this writer lays out correctly."""
    cfg = model.config
    kind = getattr(cfg, "model_type", "?")
    if kind != "llama":
        raise ExportError(
            f"GGUF export supports Llama-architecture models (LlamaForCausalLM), not "
            f"{type(model).__name__} ({kind})"
        )
    if getattr(cfg, "attention_bias", False) or getattr(cfg, "mlp_bias", False):
        raise ExportError(
            "GGUF export: Llama models with attention or MLP biases are not supported"
        )
    rope = _rope_params(cfg)
    scaling = rope.get("rope_type", rope.get("type", "default"))
    if scaling not in ("default", None, "linear"):
        raise ExportError(f"GGUF export: rope scaling {scaling!r} is not supported")


def _head_dim(cfg: Any) -> int:
    """Channels per attention head. A width-pruned student keeps the teacher's (64) with fewer
    heads, so heads x head_dim can differ from the hidden size: the file then says so
    (attention.key_length / value_length, as llama.cpp reads for e.g. Mistral-Nemo)."""
    return int(getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)


def tensor_plan(model: torch.nn.Module, plan: str | dict[str, str]) -> dict[str, str]:
    """{GGUF name: type} of every tensor the file will hold (1-D: f32)."""
    out: dict[str, str] = {}
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    for hf_name, t in model.state_dict().items():
        g = gguf_name(hf_name)
        if g is None:
            if hf_name.endswith("rotary_emb.inv_freq"):
                continue
            raise ExportError(f"GGUF export: no GGUF name for the tensor {hf_name}")
        if g == "output.weight" and tied:
            continue
        if t.ndim == 1:
            out[g] = "f32"
            continue
        typ = plan if isinstance(plan, str) else plan.get(g, plan.get("*", "f16"))
        if typ not in TYPES:
            raise ExportError(
                f"GGUF export: unknown tensor type {typ!r} (expected one of {', '.join(TYPES)})"
            )
        if typ in FORMATS and t.shape[-1] % BLOCK:
            raise ExportError(
                f"GGUF export: {g} has rows of {t.shape[-1]} values, {typ} needs a multiple of {BLOCK}"
            )
        out[g] = typ
    return out


def plan_bytes(model: torch.nn.Module, plan: dict[str, str]) -> int:
    """Bytes the tensors of `plan` (tensor_plan's) take in the file."""
    total = 0
    for hf_name, t in model.state_dict().items():
        typ = plan.get(gguf_name(hf_name) or "")
        if typ is None:
            continue
        per = {"f32": 4.0, "f16": 2.0}.get(typ) or FORMATS[typ].type_size / BLOCK
        total += int(t.numel() * per)
    return total


# --------------------------------------------------------------------------- tokenizer
def _token_list(tokenizer: Any) -> tuple[list[str], list[int]]:
    vocab = tokenizer.get_vocab()
    rev = {i: t for t, i in vocab.items()}
    added = {int(i): t for i, t in tokenizer.added_tokens_decoder.items()}
    tokens, types = [], []
    for i in range(max(vocab.values()) + 1):
        if i not in rev:
            tokens.append(f"[PAD{i}]")
            types.append(5)  # UNUSED
        elif i in added:
            tokens.append(rev[i])
            types.append(3 if added[i].special else 4)  # CONTROL / USER_DEFINED
        else:
            tokens.append(rev[i])
            types.append(1)  # NORMAL
    return tokens, types


def _backend(tokenizer: Any) -> dict[str, Any]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ExportError("GGUF export needs a fast (tokenizers) tokenizer")
    return json.loads(backend.to_str())


def _pre_name(tokenizer: Any, spec: dict[str, Any], reference: dict[str, Any] | None) -> str:
    if reference is not None and reference.get("tokens") == _token_list(tokenizer)[0]:
        return str(reference["pre"])
    ids = tokenizer.encode(_CHKTXT, add_special_tokens=False)
    h = hashlib.sha256(str(ids).encode()).hexdigest()
    if h in _KNOWN_PRE:
        return _KNOWN_PRE[h]
    pre = spec.get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not spec.get("normalizer"):
        return "gpt-2"  # GPT-2's split pattern: what a plain byte-level pre-tokenizer applies
    raise ExportError(
        f"GGUF export: llama.cpp knows no pre-tokenizer matching this tokenizer's (probe hash {h[:12]})"
    )


def reference_tokenizer(gguf_path: str | Path) -> dict[str, Any]:
    """The tokens and pre-tokenizer name of an existing GGUF (the teacher's)."""
    import gguf

    f = gguf.GGUFReader(str(gguf_path)).fields
    return {
        "tokens": f["tokenizer.ggml.tokens"].contents(),
        "pre": f["tokenizer.ggml.pre"].contents(),
    }


def add_tokenizer(w: Any, tokenizer: Any, n_vocab: int, reference: dict[str, Any] | None) -> None:
    spec = _backend(tokenizer)
    if spec["model"]["type"] != "BPE":
        raise ExportError(
            f"GGUF export: only BPE tokenizers are supported, not {spec['model']['type']}"
        )
    tokens, types = _token_list(tokenizer)
    if len(tokens) > n_vocab:
        raise ExportError(
            f"GGUF export: the tokenizer has {len(tokens)} tokens, the model {n_vocab}"
        )
    while len(tokens) < n_vocab:
        types.append(5)
        tokens.append(f"[PAD{len(tokens)}]")
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(_pre_name(tokenizer, spec, reference))
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    for kind in ("bos", "eos", "unk", "pad"):
        tid = getattr(tokenizer, f"{kind}_token_id")
        if tid is not None:
            getattr(w, f"add_{kind}_token_id")(int(tid))
    bos = tokenizer.bos_token_id
    w.add_add_bos_token(bool(bos is not None and tokenizer("a")["input_ids"][:1] == [bos]))
    w.add_add_space_prefix(False)
    if tokenizer.chat_template:
        w.add_chat_template(tokenizer.chat_template)


# --------------------------------------------------------------------------- export
def export_gguf(
    model: torch.nn.Module,
    tokenizer: Any,
    path: str | Path,
    plan: str | dict[str, str] = "q8_0",
    *,
    codes: dict[str, Quantized] | None = None,
    metadata: dict[str, Any] | None = None,
    reference: dict[str, Any] | None = None,
    name: str = "llm4all model",
) -> Path:
    """Write `model` (fp32, HF layout) and `tokenizer` to `path`; returns the path.
    metadata: extra keys, stored as llm4all.KEY strings (JSON for non-strings)."""
    import gguf

    check_supported(model)
    path = Path(path)
    types = tensor_plan(model, plan)
    codes = codes or {}
    cfg = model.config
    n_head, n_kv = int(cfg.num_attention_heads), int(cfg.num_key_value_heads)
    part = path.with_name(path.name + ".part")
    part.unlink(missing_ok=True)
    try:
        w = gguf.GGUFWriter(str(part), "llama")
        w.add_type("model")
        w.add_name(name)
        w.add_context_length(int(cfg.max_position_embeddings))
        w.add_embedding_length(int(cfg.hidden_size))
        w.add_block_count(int(cfg.num_hidden_layers))
        w.add_feed_forward_length(int(cfg.intermediate_size))
        w.add_head_count(n_head)
        w.add_head_count_kv(n_kv)
        rp = _rope_params(cfg)
        w.add_rope_freq_base(float(rp.get("rope_theta", getattr(cfg, "rope_theta", 10000.0))))
        w.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
        w.add_vocab_size(int(cfg.vocab_size))
        head_dim = _head_dim(cfg)
        w.add_rope_dimension_count(head_dim)  # transformers reads it back as head_dim
        if head_dim * n_head != int(cfg.hidden_size):
            w.add_key_length(head_dim)
            w.add_value_length(head_dim)
        if rp.get("rope_type", rp.get("type")) == "linear":
            w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            w.add_rope_scaling_factor(float(rp["factor"]))
        counts: dict[str, int] = {}
        for t in types.values():
            counts[t] = counts.get(t, 0) + 1
        main = max((t for t in counts if t != "f32"), key=lambda t: counts[t], default="f32")
        w.add_file_type(GGML_FTYPE[main])
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        for k, v in (metadata or {}).items():
            w.add_string(f"llm4all.{k}", v if isinstance(v, str) else json.dumps(v))
        add_tokenizer(w, tokenizer, int(cfg.vocab_size), reference)
        for hf_name, t in model.state_dict().items():
            g = gguf_name(hf_name)
            if g not in types:
                continue
            typ = types[g]
            perm = None
            if g.endswith("attn_q.weight"):
                perm = _rope_perm(t.shape[0], n_head)
            elif g.endswith("attn_k.weight"):
                perm = _rope_perm(t.shape[0], n_kv)
            if typ in ("f32", "f16"):
                x = t.detach().float()
                x = x[perm] if perm is not None else x
                w.add_tensor(g, x.numpy().astype(np.float32 if typ == "f32" else np.float16))
                continue
            qz = codes.get(g) or round_codes(t, typ)
            if qz.fmt.name != typ:
                raise ExportError(
                    f"GGUF export: the codes of {g} are {qz.fmt.name}, the plan says {typ}"
                )
            if perm is not None:
                qz = qz.rows(perm)
            w.add_tensor(g, qz.pack(), raw_dtype=getattr(gguf.GGMLQuantizationType, typ.upper()))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return path


def gguf_types(path: str | Path) -> dict[str, int]:
    """How many tensors of each GGML type a GGUF holds, e.g. {"Q4_0": 70, "F32": 23}."""
    import gguf

    out: dict[str, int] = {}
    for t in gguf.GGUFReader(str(path)).tensors:
        out[t.tensor_type.name] = out.get(t.tensor_type.name, 0) + 1
    return out
