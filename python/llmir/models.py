"""Model constructors: GPT-2 and LLaMA configurations with Hugging Face field
names (what `llm-translate --import-hf-config` reads), validated on creation.

    model = llmir.GPT2(n_layer=12, n_embd=768, n_head=12)
    model = llmir.Llama(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                        num_attention_heads=32, num_key_value_heads=8)
    model = llmir.from_hf_config("config.json")
"""

from __future__ import annotations

from typing import Union

from .config import ModelConfig, config_from_dict, load_config

__all__ = ["GPT2", "Llama", "from_hf_config"]


def GPT2(**fields) -> ModelConfig:
    """A GPT-2 model; unspecified fields take transformers' GPT2Config defaults.
    Raises ValueError naming a nonsensical field (e.g. n_head not dividing n_embd)."""
    return config_from_dict({"model_type": "gpt2", **fields})


def Llama(**fields) -> ModelConfig:
    """A LLaMA model (GQA via num_key_value_heads, rope_theta, rms_norm_eps,
    tie_word_embeddings); defaults as transformers' LlamaConfig."""
    return config_from_dict({"model_type": "llama", **fields})


def from_hf_config(path_or_dict: Union[str, dict]) -> ModelConfig:
    """A model from a Hugging Face config.json (path or dict)."""
    return load_config(path_or_dict)
