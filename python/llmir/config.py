"""Hugging Face config.json -> normalized model configuration.

Defaults are those of transformers' ``GPT2Config`` and ``LlamaConfig`` (a field missing from config.json takes the
value transformers would give it).  ``GPT2Config``'s ``attribute_map`` aliases (``hidden_size``, ``num_attention_heads``,
``num_hidden_layers``, ``max_position_embeddings``) are accepted too.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from typing import Any, Dict, Mapping, Optional, Union

__all__ = ["ModelConfig", "load_config", "config_from_dict", "ACTIVATIONS", "GPT2_DEFAULTS", "LLAMA_DEFAULTS"]

# Activation names accepted in ``activation_function`` / ``hidden_act`` (see reference.activation()).
ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh", "gelu", "gelu_fast", "quick_gelu", "relu", "silu", "swish", "tanh")

GPT2_DEFAULTS: Dict[str, Any] = {
    "vocab_size": 50257,
    "n_positions": 1024,
    "n_embd": 768,
    "n_layer": 12,
    "n_head": 12,
    "n_inner": None,  # -> 4 * n_embd
    "activation_function": "gelu_new",
    "layer_norm_epsilon": 1e-5,
    "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False,
    "tie_word_embeddings": True,
}

LLAMA_DEFAULTS: Dict[str, Any] = {
    "vocab_size": 32000,
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": None,  # -> num_attention_heads
    "head_dim": None,  # -> hidden_size // num_attention_heads
    "hidden_act": "silu",
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "rope_scaling": None,
    "attention_bias": False,
    "mlp_bias": False,
    "tie_word_embeddings": False,
}

_GPT2_ALIASES = {
    "hidden_size": "n_embd",
    "max_position_embeddings": "n_positions",
    "num_attention_heads": "n_head",
    "num_hidden_layers": "n_layer",
}


@dataclass(frozen=True)
class ModelConfig:
    """Architecture-normalized view of a GPT-2 or LLaMA config."""

    model_type: str  # "gpt2" | "llama"
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int  # == num_heads for GPT-2
    head_dim: int
    intermediate_size: int  # GPT-2: n_inner or 4*n_embd
    max_position_embeddings: int  # GPT-2: n_positions
    norm_eps: float  # layer_norm_epsilon | rms_norm_eps
    activation: str  # activation_function | hidden_act
    tie_word_embeddings: bool
    attention_bias: bool  # GPT-2: always True (Conv1D biases)
    mlp_bias: bool  # GPT-2: always True
    rope_theta: Optional[float] = None  # LLaMA only
    rope_scaling: Optional[Dict[str, Any]] = None  # LLaMA only; None, linear or llama3
    scale_attn_weights: bool = True  # GPT-2 only (LLaMA always scales by 1/sqrt(head_dim))
    scale_attn_by_inverse_layer_idx: bool = False  # GPT-2 only
    raw: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_gpt2(self) -> bool:
        return self.model_type == "gpt2"

    @property
    def is_llama(self) -> bool:
        return self.model_type == "llama"

    def to_hf_dict(self) -> Dict[str, Any]:
        """The Hugging Face config.json for this model: the loaded file's other fields (token ids, ...) with every
        architecture field written from this object, so ``replace`` changes reach the compiler.
        ``config_from_dict(cfg.to_hf_dict()) == cfg``."""
        if self.is_gpt2:
            if not (self.attention_bias and self.mlp_bias):
                raise ValueError("GPT-2 always has attention and MLP biases; it cannot express attention_bias/mlp_bias = False")
            out = {k: v for k, v in self.raw.items() if k not in _GPT2_ALIASES}
            out.update(model_type="gpt2", vocab_size=self.vocab_size, n_positions=self.max_position_embeddings,
                       n_embd=self.hidden_size, n_layer=self.num_layers, n_head=self.num_heads,
                       n_inner=self.intermediate_size, activation_function=self.activation,
                       layer_norm_epsilon=self.norm_eps, scale_attn_weights=self.scale_attn_weights,
                       scale_attn_by_inverse_layer_idx=self.scale_attn_by_inverse_layer_idx,
                       tie_word_embeddings=self.tie_word_embeddings)
            return out
        out = dict(self.raw)
        out.update(model_type="llama", vocab_size=self.vocab_size, hidden_size=self.hidden_size,
                   intermediate_size=self.intermediate_size, num_hidden_layers=self.num_layers,
                   num_attention_heads=self.num_heads, num_key_value_heads=self.num_kv_heads, head_dim=self.head_dim,
                   hidden_act=self.activation, max_position_embeddings=self.max_position_embeddings,
                   rms_norm_eps=self.norm_eps, rope_theta=self.rope_theta, rope_scaling=self.rope_scaling,
                   attention_bias=self.attention_bias, mlp_bias=self.mlp_bias,
                   tie_word_embeddings=self.tie_word_embeddings)
        if self.rope_scaling and self.rope_scaling["rope_type"] == "linear":
            # transformers before 4.43 wants exactly {"type", "factor"}; later ones read "type" too.
            out["rope_scaling"] = {"type": "linear", "factor": self.rope_scaling["factor"]}
        return out

    def replace(self, **changes: Any) -> "ModelConfig":
        """A copy with fields changed and re-validated (e.g. ``cfg.replace(num_kv_heads=cfg.num_heads)``)."""
        new = replace(self, **changes)
        _validate(new, "ModelConfig.replace")
        return new


def load_config(path_or_dict: Union[str, os.PathLike, Mapping[str, Any]]) -> ModelConfig:
    """Loads a HF config.json (path) or an already-parsed dict."""
    if isinstance(path_or_dict, Mapping):
        return config_from_dict(path_or_dict)
    where = os.fspath(path_or_dict)
    try:
        with open(where, "r", encoding="utf-8") as f:
            d = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not valid JSON: {e}") from None
    return config_from_dict(d, where=where)


def config_from_dict(d: Mapping[str, Any], where: str = "config") -> ModelConfig:
    if not isinstance(d, Mapping):
        raise ValueError(f"{where}: config must be a JSON object")
    mt = d.get("model_type")
    if mt == "gpt2":
        cfg = _gpt2(dict(d), where)
    elif mt == "llama":
        cfg = _llama(dict(d), where)
    else:
        raise ValueError(f"{where}: field 'model_type': unsupported value {mt!r} (supported: 'gpt2', 'llama')")
    _validate(cfg, where)
    return cfg


def _get(d: Dict[str, Any], key: str, defaults: Mapping[str, Any], aliases: Mapping[str, str] = {}) -> Any:
    # aliases: alias -> canonical key
    value = d.get(key, defaults.get(key))
    for alias, canon in aliases.items():
        if canon == key and alias in d:
            if key in d and d[key] != d[alias]:
                raise ValueError(f"field '{alias}' ({d[alias]!r}) contradicts '{key}' ({d[key]!r})")
            value = d[alias]
    return value


def _int(where: str, name: str, v: Any, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        else:
            raise ValueError(f"{where}: field '{name}': expected an integer, got {v!r}")
    if v < minimum:
        raise ValueError(f"{where}: field '{name}': must be >= {minimum}, got {v}")
    return v


def _float(where: str, name: str, v: Any, positive: bool = True) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{where}: field '{name}': expected a finite number, got {v!r}")
    if positive and v <= 0:
        raise ValueError(f"{where}: field '{name}': must be > 0, got {v}")
    return float(v)


def _bool(where: str, name: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"{where}: field '{name}': expected true/false, got {v!r}")
    return v


def _gpt2(d: Dict[str, Any], where: str) -> ModelConfig:
    try:
        g = {k: _get(d, k, GPT2_DEFAULTS, _GPT2_ALIASES) for k in GPT2_DEFAULTS}
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    n_embd = _int(where, "n_embd", g["n_embd"])
    n_head = _int(where, "n_head", g["n_head"])
    if n_embd % n_head:
        raise ValueError(f"{where}: field 'n_head': n_embd {n_embd} is not divisible by n_head {n_head}")
    n_inner = g["n_inner"]
    inner = 4 * n_embd if n_inner is None else _int(where, "n_inner", n_inner)
    return ModelConfig(
        model_type="gpt2",
        vocab_size=_int(where, "vocab_size", g["vocab_size"]),
        hidden_size=n_embd,
        num_layers=_int(where, "n_layer", g["n_layer"]),
        num_heads=n_head,
        num_kv_heads=n_head,
        head_dim=n_embd // n_head,
        intermediate_size=inner,
        max_position_embeddings=_int(where, "n_positions", g["n_positions"]),
        norm_eps=_float(where, "layer_norm_epsilon", g["layer_norm_epsilon"]),
        activation=g["activation_function"],
        tie_word_embeddings=_bool(where, "tie_word_embeddings", g["tie_word_embeddings"]),
        attention_bias=True,
        mlp_bias=True,
        scale_attn_weights=_bool(where, "scale_attn_weights", g["scale_attn_weights"]),
        scale_attn_by_inverse_layer_idx=_bool(
            where, "scale_attn_by_inverse_layer_idx", g["scale_attn_by_inverse_layer_idx"]
        ),
        raw=dict(d),
    )


def _llama(d: Dict[str, Any], where: str) -> ModelConfig:
    g = {k: d.get(k, v) for k, v in LLAMA_DEFAULTS.items()}
    hidden = _int(where, "hidden_size", g["hidden_size"])
    heads = _int(where, "num_attention_heads", g["num_attention_heads"])
    kv = heads if g["num_key_value_heads"] is None else _int(where, "num_key_value_heads", g["num_key_value_heads"])
    if g["head_dim"] is None:
        if hidden % heads:
            raise ValueError(
                f"{where}: field 'num_attention_heads': hidden_size {hidden} is not divisible by {heads} heads "
                f"(and no head_dim given)"
            )
        head_dim = hidden // heads
    else:
        head_dim = _int(where, "head_dim", g["head_dim"])
    return ModelConfig(
        model_type="llama",
        vocab_size=_int(where, "vocab_size", g["vocab_size"]),
        hidden_size=hidden,
        num_layers=_int(where, "num_hidden_layers", g["num_hidden_layers"]),
        num_heads=heads,
        num_kv_heads=kv,
        head_dim=head_dim,
        intermediate_size=_int(where, "intermediate_size", g["intermediate_size"]),
        max_position_embeddings=_int(where, "max_position_embeddings", g["max_position_embeddings"]),
        norm_eps=_float(where, "rms_norm_eps", g["rms_norm_eps"]),
        activation=g["hidden_act"],
        tie_word_embeddings=_bool(where, "tie_word_embeddings", g["tie_word_embeddings"]),
        attention_bias=_bool(where, "attention_bias", g["attention_bias"]),
        mlp_bias=_bool(where, "mlp_bias", g["mlp_bias"]),
        rope_theta=_float(where, "rope_theta", g["rope_theta"]),
        rope_scaling=_rope_scaling(where, g["rope_scaling"]),
        raw=dict(d),
    )


def _rope_scaling(where: str, rs: Any) -> Optional[Dict[str, Any]]:
    if rs is None:
        return None
    if not isinstance(rs, Mapping):
        raise ValueError(f"{where}: field 'rope_scaling': expected an object or null, got {rs!r}")
    kind = rs.get("rope_type", rs.get("type"))
    if kind == "default":
        return None
    if kind == "linear":
        return {"rope_type": "linear", "factor": _float(where, "rope_scaling.factor", rs.get("factor"))}
    if kind == "llama3":
        out = {"rope_type": "llama3"}
        for k in ("factor", "low_freq_factor", "high_freq_factor"):
            out[k] = _float(where, f"rope_scaling.{k}", rs.get(k))
        out["original_max_position_embeddings"] = _int(
            where, "rope_scaling.original_max_position_embeddings", rs.get("original_max_position_embeddings")
        )
        if out["low_freq_factor"] == out["high_freq_factor"]:
            raise ValueError(f"{where}: field 'rope_scaling': low_freq_factor must differ from high_freq_factor")
        return out
    raise ValueError(f"{where}: field 'rope_scaling': unsupported rope type {kind!r} (supported: linear, llama3)")


def _validate(cfg: ModelConfig, where: str) -> None:
    if cfg.model_type not in ("gpt2", "llama"):
        raise ValueError(f"{where}: field 'model_type': unsupported value {cfg.model_type!r}")
    act_field = "activation_function" if cfg.is_gpt2 else "hidden_act"
    if cfg.activation not in ACTIVATIONS:
        raise ValueError(f"{where}: field '{act_field}': unsupported activation {cfg.activation!r} ({', '.join(ACTIVATIONS)})")
    if cfg.num_kv_heads < 1 or cfg.num_heads % cfg.num_kv_heads:
        raise ValueError(
            f"{where}: field 'num_key_value_heads': {cfg.num_heads} attention heads are not divisible by "
            f"{cfg.num_kv_heads} key/value heads"
        )
    if cfg.is_gpt2 and cfg.num_kv_heads != cfg.num_heads:
        raise ValueError(f"{where}: GPT-2 has no grouped-query attention (num_kv_heads must equal num_heads)")
    if cfg.is_gpt2 and cfg.head_dim * cfg.num_heads != cfg.hidden_size:
        raise ValueError(f"{where}: GPT-2 needs head_dim * n_head == n_embd")
    if cfg.is_llama and cfg.head_dim % 2:
        raise ValueError(f"{where}: field 'head_dim': RoPE needs an even head_dim, got {cfg.head_dim}")
    for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "head_dim", "intermediate_size",
                 "max_position_embeddings"):
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{where}: {name} must be a positive integer, got {v!r}")
