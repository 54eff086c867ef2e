"""Hugging Face parameter layout, deterministic random weights and token data (numpy only, no torch).

Parameter names are exactly the HF names of the bare model (the keys found in the model's own safetensors file):

GPT-2 (Conv1D weights stored ``[in, out]``)::

    wte.weight [V, h]   wpe.weight [P, h]
    h.{i}.ln_1.weight/bias [h]   h.{i}.attn.c_attn.weight [h, 3h]  h.{i}.attn.c_attn.bias [3h]
    h.{i}.attn.c_proj.weight [h, h]  .bias [h]   h.{i}.ln_2.weight/bias [h]
    h.{i}.mlp.c_fc.weight [h, I]  .bias [I]      h.{i}.mlp.c_proj.weight [I, h]  .bias [h]
    ln_f.weight/bias [h]        (lm_head.weight [V, h] only when tie_word_embeddings is false)

LLaMA (Linear weights stored ``[out, in]``)::

    model.embed_tokens.weight [V, h]
    model.layers.{i}.self_attn.q_proj.weight [H*D, h]   k_proj/v_proj [KV*D, h]   o_proj [h, H*D]  (+ .bias if attention_bias)
    model.layers.{i}.mlp.gate_proj.weight [I, h]  up_proj [I, h]  down_proj [h, I]   (+ .bias if mlp_bias)
    model.layers.{i}.input_layernorm.weight [h]   model.layers.{i}.post_attention_layernorm.weight [h]
    model.norm.weight [h]       lm_head.weight [V, h]  (absent when tie_word_embeddings)
"""

from __future__ import annotations

import io
import os
import re
from collections import OrderedDict
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple, Union

import numpy as np

from .config import ModelConfig

__all__ = [
    "param_shapes",
    "num_params",
    "param_kind",
    "random_weights",
    "init_params",
    "random_tokens",
    "normalize_params",
    "canonical_params",
    "check_param_table",
    "save_tokens",
    "load_tokens",
]

Shape = Tuple[int, ...]


def param_shapes(cfg: ModelConfig) -> "OrderedDict[str, Shape]":
    """All parameters of the model, in HF state_dict order, with their global shapes."""
    h, V, I = cfg.hidden_size, cfg.vocab_size, cfg.intermediate_size
    out: "OrderedDict[str, Shape]" = OrderedDict()
    if cfg.is_gpt2:
        out["wte.weight"] = (V, h)
        out["wpe.weight"] = (cfg.max_position_embeddings, h)
        for i in range(cfg.num_layers):
            p = f"h.{i}."
            out[p + "ln_1.weight"] = (h,)
            out[p + "ln_1.bias"] = (h,)
            out[p + "attn.c_attn.weight"] = (h, 3 * h)
            out[p + "attn.c_attn.bias"] = (3 * h,)
            out[p + "attn.c_proj.weight"] = (h, h)
            out[p + "attn.c_proj.bias"] = (h,)
            out[p + "ln_2.weight"] = (h,)
            out[p + "ln_2.bias"] = (h,)
            out[p + "mlp.c_fc.weight"] = (h, I)
            out[p + "mlp.c_fc.bias"] = (I,)
            out[p + "mlp.c_proj.weight"] = (I, h)
            out[p + "mlp.c_proj.bias"] = (h,)
        out["ln_f.weight"] = (h,)
        out["ln_f.bias"] = (h,)
    else:
        q, kv = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
        out["model.embed_tokens.weight"] = (V, h)
        for i in range(cfg.num_layers):
            p = f"model.layers.{i}."
            for name, o, n in (("q_proj", q, h), ("k_proj", kv, h), ("v_proj", kv, h), ("o_proj", h, q)):
                out[p + f"self_attn.{name}.weight"] = (o, n)
                if cfg.attention_bias:
                    out[p + f"self_attn.{name}.bias"] = (o,)
            for name, o, n in (("gate_proj", I, h), ("up_proj", I, h), ("down_proj", h, I)):
                out[p + f"mlp.{name}.weight"] = (o, n)
                if cfg.mlp_bias:
                    out[p + f"mlp.{name}.bias"] = (o,)
            out[p + "input_layernorm.weight"] = (h,)
            out[p + "post_attention_layernorm.weight"] = (h,)
        out["model.norm.weight"] = (h,)
    if not cfg.tie_word_embeddings:
        out["lm_head.weight"] = (V, h)
    return out


def num_params(cfg: ModelConfig) -> int:
    """Number of distinct parameters (a tied LM head counts once)."""
    total = 0
    for shape in param_shapes(cfg).values():
        n = 1
        for d in shape:
            n *= d
        total += n
    return total


_NORM_RE = re.compile(r"(^|\.)(ln_1|ln_2|ln_f|input_layernorm|post_attention_layernorm|norm)\.weight$")


def param_kind(name: str) -> str:
    """'bias' | 'norm' | 'matrix' (embeddings and projections) -- decides the random initialization."""
    if name.endswith(".bias"):
        return "bias"
    if _NORM_RE.search(name):
        return "norm"
    return "matrix"


def random_weights(cfg: ModelConfig, seed: int = 0, std: float = 0.02) -> "OrderedDict[str, np.ndarray]":
    """Deterministic GPT-2-like init: normal(0, std) matrices/embeddings, ones for norm weights, zeros for biases.

    Draws come from ``np.random.default_rng(seed)``, one ``rng.normal(0, std, shape)`` per matrix, in
    ``param_shapes`` order (norms and biases draw nothing), cast to float32.
    """
    return init_params(((name, shape, param_kind(name)) for name, shape in param_shapes(cfg).items()), seed, std)


def init_params(table: Iterable[Tuple[str, Shape, str]], seed: int = 0,
                std: float = 0.02) -> "OrderedDict[str, np.ndarray]":
    """``random_weights``' init for any parameter table of (name, shape, kind) with kind 'matrix' | 'norm' |
    'bias' (builder models use it with the kinds their ops give each parameter)."""
    rng = np.random.default_rng(seed)
    out: "OrderedDict[str, np.ndarray]" = OrderedDict()
    for name, shape, kind in table:
        if kind == "bias":
            out[name] = np.zeros(shape, dtype=np.float32)
        elif kind == "norm":
            out[name] = np.ones(shape, dtype=np.float32)
        else:
            out[name] = rng.normal(0.0, std, size=shape).astype(np.float32)
    return out


def random_tokens(vocab_size: int, num_tokens: int, seed: int = 0) -> np.ndarray:
    """1-D int32 array uniformly in [0, vocab_size), from ``np.random.default_rng([seed, 1])``
    (a stream independent of the weights' ``default_rng(seed)``)."""
    if num_tokens < 1:
        raise ValueError(f"num_tokens must be >= 1, got {num_tokens}")
    if not 1 <= vocab_size <= 2**31 - 1:
        raise ValueError(f"vocab_size must be in [1, 2^31), got {vocab_size}")
    rng = np.random.default_rng([seed, 1])
    return rng.integers(0, vocab_size, size=num_tokens, dtype=np.int32)


def save_tokens(tokens: np.ndarray, path: Union[str, os.PathLike]) -> None:
    """Writes a 1-D integer array as .npy, atomically."""
    from .safetensors import _atomic_write

    arr = np.asarray(tokens)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise ValueError(f"tokens must be a 1-D integer array, got shape {arr.shape} dtype {arr.dtype}")
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    _atomic_write(path, buf.getvalue())


def load_tokens(path: Union[str, os.PathLike]) -> np.ndarray:
    """Reads a 1-D integer .npy token file (as INTERFACES.md's TOKENS.npy)."""
    arr = np.load(path, allow_pickle=False)
    if arr.ndim != 1 or arr.dtype.kind not in "iu" or arr.size == 0:
        raise ValueError(f"{os.fspath(path)}: expected a non-empty 1-D integer array, got shape {arr.shape} "
                         f"dtype {arr.dtype}")
    return arr


# Buffers some HF checkpoints carry that are not parameters.
_BUFFER_RE = re.compile(r"(^h\.\d+\.attn\.(bias|masked_bias)$)|(\.rotary_emb\.inv_freq$)")


def canonical_params(params: Mapping[str, Any], cfg: Optional[ModelConfig] = None) -> Dict[str, Any]:
    """The tensors of a checkpoint or ``state_dict()`` under the bare model's HF names: strips the ``transformer.``
    prefix (GPT2LMHeadModel), drops non-parameter buffers (``attn.bias``, ``attn.masked_bias``,
    ``rotary_emb.inv_freq``) and a tied ``lm_head.weight`` (per ``cfg.tie_word_embeddings``; without ``cfg``: when it
    is the embedding tensor itself, as a tied model's state_dict holds it). Raises ValueError for a name given twice."""
    out: Dict[str, Any] = {}
    for name, t in params.items():
        key = name
        if (cfg is None or cfg.is_gpt2) and key.startswith("transformer."):
            key = key[len("transformer."):]
        if _BUFFER_RE.search(key):
            continue
        if key == "lm_head.weight" and (cfg.tie_word_embeddings if cfg is not None else _is_tied(params, t)):
            continue
        if key in out:
            raise ValueError(f"parameter '{key}' given twice")
        out[key] = t
    return out


def _is_tied(params: Mapping[str, Any], head: Any) -> bool:
    """True when `head` shares its storage with the token embedding (a tied LM head)."""
    for name in ("wte.weight", "transformer.wte.weight", "model.embed_tokens.weight"):
        emb = params.get(name)
        if emb is None:
            continue
        if emb is head:
            return True
        if tuple(emb.shape) != tuple(head.shape):
            return False
        if hasattr(emb, "data_ptr") and hasattr(head, "data_ptr"):  # torch
            return emb.data_ptr() == head.data_ptr()
        return isinstance(emb, np.ndarray) and isinstance(head, np.ndarray) and bool(np.shares_memory(emb, head))
    return False


def check_param_table(expected: Mapping[str, Shape], params: Mapping[str, Any], where: str, what: str) -> None:
    """Raises ValueError listing the parameters of ``expected`` (name -> shape) that ``params`` misses, has in
    excess or holds with another shape; ``what`` names the model ("the gpt2 config")."""
    missing = [n for n in expected if n not in params]
    unexpected = sorted(n for n in params if n not in expected)
    problems = []
    if missing:
        problems.append(f"missing {len(missing)}: {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    if unexpected:
        problems.append(
            f"unexpected {len(unexpected)}: {', '.join(unexpected[:8])}{' ...' if len(unexpected) > 8 else ''}"
        )
    for n, shape in expected.items():
        if n in params and tuple(params[n].shape) != tuple(shape):
            problems.append(f"'{n}' has shape {list(params[n].shape)}, expected {list(shape)}")
    if problems:
        raise ValueError(f"{where}: parameters do not match {what}: " + "; ".join(problems))


def normalize_params(cfg: ModelConfig, params: Mapping[str, Any], where: str = "weights") -> Dict[str, Any]:
    """Maps a checkpoint's tensors onto ``param_shapes(cfg)``; raises ValueError listing what is missing, unexpected
    or mis-shaped.

    Tolerated: a ``transformer.`` prefix (GPT2LMHeadModel.state_dict()), non-parameter buffers (``attn.bias``,
    ``attn.masked_bias``, ``rotary_emb.inv_freq``) and a redundant ``lm_head.weight`` when the head is tied.
    """
    expected = param_shapes(cfg)
    try:
        out = canonical_params(params, cfg)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    check_param_table(expected, out, where, f"the {cfg.model_type} config")
    return {n: out[n] for n in expected}
