import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import PYROOT, model_path
from llmir import make_inputs
from llmir import safetensors as st
from llmir.config import load_config
from llmir.weights import (load_tokens, normalize_params, param_kind, param_shapes, random_tokens,
                           random_weights)


def test_param_names_gpt2(gpt2_tiny):
    s = param_shapes(gpt2_tiny)
    assert list(s)[:2] == ["wte.weight", "wpe.weight"]
    assert s["h.1.attn.c_attn.weight"] == (64, 192)
    assert s["h.0.attn.c_attn.bias"] == (192,)
    assert s["h.0.mlp.c_fc.weight"] == (64, 256)
    assert s["h.0.mlp.c_proj.weight"] == (256, 64)
    assert "lm_head.weight" not in s
    assert len(s) == 2 + 12 * 2 + 2


def test_param_names_llama(llama_tiny):
    s = param_shapes(llama_tiny)
    assert s["model.layers.0.self_attn.q_proj.weight"] == (64, 64)
    assert s["model.layers.0.self_attn.k_proj.weight"] == (32, 64)
    assert s["model.layers.0.self_attn.o_proj.weight"] == (64, 64)
    assert s["model.layers.1.mlp.gate_proj.weight"] == (176, 64)
    assert s["model.layers.1.mlp.down_proj.weight"] == (64, 176)
    assert s["lm_head.weight"] == (256, 64)
    assert not any(n.endswith(".bias") for n in s)
    tied = param_shapes(llama_tiny.replace(tie_word_embeddings=True, attention_bias=True, mlp_bias=True))
    assert "lm_head.weight" not in tied
    assert tied["model.layers.0.self_attn.k_proj.bias"] == (32,)
    assert tied["model.layers.0.mlp.up_proj.bias"] == (176,)


def test_param_kinds():
    assert param_kind("h.0.ln_1.weight") == "norm"
    assert param_kind("ln_f.weight") == "norm"
    assert param_kind("model.norm.weight") == "norm"
    assert param_kind("model.layers.3.post_attention_layernorm.weight") == "norm"
    assert param_kind("h.0.ln_1.bias") == "bias"
    assert param_kind("wte.weight") == "matrix"
    assert param_kind("model.layers.0.self_attn.q_proj.weight") == "matrix"


def test_random_weights_deterministic(llama_tiny, gpt2_tiny):
    for cfg in (gpt2_tiny, llama_tiny):
        a, b, c = random_weights(cfg, 1), random_weights(cfg, 1), random_weights(cfg, 2)
        for n in a:
            np.testing.assert_array_equal(a[n], b[n])
            assert a[n].dtype == np.float32
        assert not np.array_equal(a[list(a)[0]], c[list(c)[0]])
    w = random_weights(gpt2_tiny, 0, std=0.02)
    assert np.all(w["h.0.ln_1.weight"] == 1) and np.all(w["h.0.ln_1.bias"] == 0)
    assert abs(float(w["wte.weight"].std()) - 0.02) < 0.001
    # First draw is wte from default_rng(seed).
    np.testing.assert_array_equal(
        w["wte.weight"], np.random.default_rng(0).normal(0, 0.02, size=(256, 64)).astype(np.float32))


def test_random_tokens():
    t = random_tokens(256, 1000, seed=3)
    assert t.dtype == np.int32 and t.shape == (1000,)
    assert t.min() >= 0 and t.max() < 256 and len(np.unique(t)) > 200
    np.testing.assert_array_equal(t, random_tokens(256, 1000, seed=3))
    with pytest.raises(ValueError):
        random_tokens(256, 0)


def test_normalize_params(gpt2_tiny, llama_tiny):
    w = random_weights(gpt2_tiny, 0)
    hf_like = {"transformer." + k: v for k, v in w.items()}
    hf_like["transformer.h.0.attn.bias"] = np.ones((1, 1, 64, 64), np.float32)  # causal-mask buffer
    hf_like["lm_head.weight"] = w["wte.weight"]  # tied
    out = normalize_params(gpt2_tiny, hf_like)
    assert list(out) == list(param_shapes(gpt2_tiny))
    bad = dict(w)
    del bad["h.1.ln_2.bias"]
    bad["h.0.attn.c_attn.weight"] = np.zeros((192, 64), np.float32)  # [out, in] by mistake
    bad["h.9.mlp.c_fc.weight"] = np.zeros(1, np.float32)
    with pytest.raises(ValueError) as e:
        normalize_params(gpt2_tiny, bad)
    msg = str(e.value)
    assert "missing 1: h.1.ln_2.bias" in msg and "unexpected 1: h.9.mlp.c_fc.weight" in msg
    assert "'h.0.attn.c_attn.weight' has shape [192, 64], expected [64, 192]" in msg
    lw = random_weights(llama_tiny, 0)
    del lw["lm_head.weight"]
    with pytest.raises(ValueError, match="lm_head.weight"):
        normalize_params(llama_tiny, lw)


def test_make_inputs_cli(tmp_path):
    w, t = tmp_path / "w.safetensors", tmp_path / "t.npy"
    args = ["--config", model_path("llama-tiny"), "--weights", str(w), "--tokens", str(t),
            "--num-tokens", "500", "--seed", "7"]
    assert make_inputs.main(args) == 0
    cfg = load_config(model_path("llama-tiny"))
    weights = st.load_file(w)
    assert {k: v.shape for k, v in weights.items()} == dict(param_shapes(cfg))
    ref = random_weights(cfg, seed=7)
    for k in ref:
        np.testing.assert_array_equal(weights[k], ref[k])
    assert st.read_metadata(w)["llmir.seed"] == "7"
    tokens = load_tokens(t)
    assert tokens.dtype == np.int32 and tokens.shape == (500,)
    np.testing.assert_array_equal(tokens, random_tokens(256, 500, seed=7))
    first = w.read_bytes()
    assert make_inputs.main(args) == 0
    assert w.read_bytes() == first  # deterministic bytes

    b = tmp_path / "b.safetensors"
    assert make_inputs.main(["--config", model_path("gpt2-tiny"), "--weights", str(b), "--dtype", "bf16"]) == 0
    infos, _ = st.read_header(b)
    assert {i.dtype for i in infos.values()} == {"BF16"}


def test_make_inputs_errors(tmp_path, capsys):
    cfg = model_path("gpt2-tiny")
    assert make_inputs.main(["--config", cfg]) == 2
    assert make_inputs.main(["--config", cfg, "--tokens", str(tmp_path / "t.npy")]) == 2
    assert make_inputs.main(["--config", cfg, "--tokens", str(tmp_path / "t.npy"), "--num-tokens", "0"]) == 2
    assert make_inputs.main(["--config", str(tmp_path / "missing.json"), "--weights", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert err.count("error: ") == 4
    assert not os.listdir(tmp_path)


def test_make_inputs_module_entry_point(tmp_path):
    t = tmp_path / "t.npy"
    env = dict(os.environ, PYTHONPATH=PYROOT)
    r = subprocess.run([sys.executable, "-m", "llmir.make_inputs", "--config", model_path("gpt2-tiny"),
                        "--tokens", str(t), "--num-tokens", "10"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert np.load(t).shape == (10,)
