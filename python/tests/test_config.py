import glob
import json
import os

import pytest

from conftest import MODELS, model_path
from llmir.config import ModelConfig, config_from_dict, load_config
from llmir.weights import num_params


def test_gpt2_defaults_match_transformers():
    c = config_from_dict({"model_type": "gpt2"})
    assert (c.vocab_size, c.hidden_size, c.num_layers, c.num_heads) == (50257, 768, 12, 12)
    assert c.max_position_embeddings == 1024
    assert c.intermediate_size == 4 * 768
    assert c.norm_eps == 1e-5
    assert c.activation == "gelu_new"
    assert c.tie_word_embeddings is True
    assert c.num_kv_heads == 12 and c.head_dim == 64
    assert c.attention_bias and c.mlp_bias
    assert c.scale_attn_weights and not c.scale_attn_by_inverse_layer_idx
    assert c.rope_theta is None


def test_llama_defaults_match_transformers():
    c = config_from_dict({"model_type": "llama"})
    assert (c.vocab_size, c.hidden_size, c.intermediate_size) == (32000, 4096, 11008)
    assert (c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim) == (32, 32, 32, 128)
    assert c.max_position_embeddings == 2048
    assert c.norm_eps == 1e-6
    assert c.rope_theta == 10000.0 and c.rope_scaling is None
    assert c.tie_word_embeddings is False
    assert c.attention_bias is False and c.mlp_bias is False
    assert c.activation == "silu"


def test_gpt2_n_inner_and_aliases():
    c = config_from_dict({"model_type": "gpt2", "n_embd": 64, "n_head": 4, "n_inner": 100})
    assert c.intermediate_size == 100
    c = config_from_dict({"model_type": "gpt2", "hidden_size": 128, "num_attention_heads": 2,
                          "num_hidden_layers": 3, "max_position_embeddings": 32})
    assert (c.hidden_size, c.num_heads, c.num_layers, c.max_position_embeddings) == (128, 2, 3, 32)
    assert c.intermediate_size == 512
    with pytest.raises(ValueError, match="contradicts"):
        config_from_dict({"model_type": "gpt2", "hidden_size": 128, "n_embd": 64})


def test_llama_head_dim_and_kv_heads():
    c = config_from_dict({"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4,
                          "num_key_value_heads": 1, "head_dim": 32})
    assert c.head_dim == 32 and c.num_kv_heads == 1


def test_tiny_test_models(gpt2_tiny, llama_tiny):
    g = gpt2_tiny
    assert (g.model_type, g.vocab_size, g.hidden_size, g.num_layers, g.num_heads, g.head_dim) == ("gpt2", 256, 64, 2, 4, 16)
    assert g.intermediate_size == 256 and g.max_position_embeddings == 64 and g.tie_word_embeddings
    l = llama_tiny
    assert (l.model_type, l.vocab_size, l.hidden_size, l.num_layers, l.num_heads, l.num_kv_heads) == ("llama", 256, 64, 2, 4, 2)
    assert l.head_dim == 16 and l.intermediate_size == 176 and not l.tie_word_embeddings
    assert l.raw["_name_or_path"].startswith("llmir/llama-tiny")


def test_all_shipped_configs_load():
    files = sorted(glob.glob(os.path.join(MODELS, "*.json")))
    assert files
    for f in files:
        assert isinstance(load_config(f), ModelConfig)


@pytest.mark.parametrize("name,count", [
    ("gpt2-124m", 124_439_808),  # HF GPT2LMHeadModel num_parameters()
    ("llama2-7b", 6_738_415_616),
    ("llama3-8b", 8_030_261_248),
    ("llama2-70b", 68_976_648_192),
])
def test_param_counts_of_known_models(name, count):
    assert num_params(load_config(model_path(name))) == count


@pytest.mark.parametrize("d,msg", [
    ({"model_type": "bert"}, "model_type"),
    ({}, "model_type"),
    ({"model_type": "gpt2", "n_embd": 65, "n_head": 4}, "n_head"),
    ({"model_type": "gpt2", "n_layer": 0}, "n_layer"),
    ({"model_type": "gpt2", "n_layer": "2"}, "n_layer"),
    ({"model_type": "gpt2", "activation_function": "mish"}, "activation_function"),
    ({"model_type": "gpt2", "layer_norm_epsilon": -1.0}, "layer_norm_epsilon"),
    ({"model_type": "llama", "num_attention_heads": 32, "num_key_value_heads": 5}, "num_key_value_heads"),
    ({"model_type": "llama", "hidden_size": 100, "num_attention_heads": 3}, "num_attention_heads"),
    ({"model_type": "llama", "tie_word_embeddings": "yes"}, "tie_word_embeddings"),
    ({"model_type": "llama", "rope_scaling": {"type": "dynamic", "factor": 2.0}}, "rope_scaling"),
    ({"model_type": "llama", "hidden_size": 48, "num_attention_heads": 16}, "head_dim"),
])
def test_invalid_configs(d, msg):
    with pytest.raises(ValueError, match=msg):
        config_from_dict(d)


def test_bad_json_file(tmp_path):
    p = tmp_path / "c.json"
    p.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_config(p)


def test_rope_scaling_forms():
    c = config_from_dict({"model_type": "llama", "rope_scaling": {"type": "linear", "factor": 2.0}})
    assert c.rope_scaling == {"rope_type": "linear", "factor": 2.0}
    c = config_from_dict({"model_type": "llama", "rope_scaling": {
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192}})
    assert c.rope_scaling["rope_type"] == "llama3"


def test_replace_revalidates(llama_tiny):
    assert llama_tiny.replace(num_kv_heads=4).num_kv_heads == 4
    with pytest.raises(ValueError):
        llama_tiny.replace(num_kv_heads=3)


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(MODELS, "*.json"))))
def test_to_hf_dict_round_trips(path):
    cfg = load_config(path)
    assert config_from_dict(cfg.to_hf_dict()) == cfg
    changed = cfg.replace(num_layers=1, tie_word_embeddings=not cfg.tie_word_embeddings)
    assert config_from_dict(changed.to_hf_dict()) == changed  # replace() reaches the HF fields


def test_to_hf_dict_keeps_other_fields_and_drops_stale_aliases():
    cfg = config_from_dict({"model_type": "gpt2", "hidden_size": 64, "n_head": 4, "bos_token_id": 7})
    d = cfg.replace(hidden_size=128, head_dim=32).to_hf_dict()
    assert d["bos_token_id"] == 7 and d["n_embd"] == 128 and "hidden_size" not in d
    with pytest.raises(ValueError, match="GPT-2 always has"):
        cfg.replace(mlp_bias=False).to_hf_dict()
