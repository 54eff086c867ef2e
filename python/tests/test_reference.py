import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from llmir import reference as R  # noqa: E402
from llmir.weights import param_shapes, random_weights  # noqa: E402


def _ids(cfg, B=2, S=16, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, cfg.vocab_size, size=(B, S)))


# ------------------------------------------------------------------ independent float64 numpy implementations


def _np_gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def _np_layernorm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _np_attention(q, k, v):
    """q: [S, H, D], k/v: [S, KV, D]; explicit per-head, per-position loops; GQA by head index // group."""
    S, H, D = q.shape
    KV = k.shape[1]
    out = np.zeros_like(q)
    for h in range(H):
        kh = h // (H // KV)
        for t in range(S):
            s = np.array([q[t, h] @ k[u, kh] for u in range(t + 1)]) / np.sqrt(D)
            p = np.exp(s - s.max())
            p /= p.sum()
            out[t, h] = sum(p[u] * v[u, kh] for u in range(t + 1))
    return out


def _np_gpt2(cfg, w, ids):
    w = {k: np.asarray(v, dtype=np.float64) for k, v in w.items()}
    S, h, H = len(ids), cfg.hidden_size, cfg.num_heads
    x = w["wte.weight"][ids] + w["wpe.weight"][np.arange(S)]
    for i in range(cfg.num_layers):
        p = f"h.{i}."
        a = _np_layernorm(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"], cfg.norm_eps)
        qkv = a @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
        q, k, v = (qkv[:, j * h:(j + 1) * h].reshape(S, H, -1) for j in range(3))
        o = _np_attention(q, k, v).reshape(S, h)
        x = x + o @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        m = _np_layernorm(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"], cfg.norm_eps)
        m = _np_gelu_tanh(m @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"])
        x = x + m @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
    x = _np_layernorm(x, w["ln_f.weight"], w["ln_f.bias"], cfg.norm_eps)
    return x @ w["wte.weight"].T


def _np_rope(x, theta):
    """Rotate-half RoPE written as complex rotation of the pairs (j, j + D/2)."""
    S, H, D = x.shape
    half = D // 2
    freq = theta ** (-np.arange(half) * 2.0 / D)
    ang = np.arange(S)[:, None] * freq[None, :]  # [S, D/2]
    z = (x[..., :half] + 1j * x[..., half:]) * np.exp(1j * ang)[:, None, :]
    return np.concatenate([z.real, z.imag], axis=-1)


def _np_llama(cfg, w, ids):
    w = {k: np.asarray(v, dtype=np.float64) for k, v in w.items()}
    S, D = len(ids), cfg.head_dim

    def rms(x, g):
        return x / np.sqrt((x**2).mean(-1, keepdims=True) + cfg.norm_eps) * g

    x = w["model.embed_tokens.weight"][ids]
    for i in range(cfg.num_layers):
        p = f"model.layers.{i}."
        a = rms(x, w[p + "input_layernorm.weight"])
        q = (a @ w[p + "self_attn.q_proj.weight"].T).reshape(S, -1, D)
        k = (a @ w[p + "self_attn.k_proj.weight"].T).reshape(S, -1, D)
        v = (a @ w[p + "self_attn.v_proj.weight"].T).reshape(S, -1, D)
        o = _np_attention(_np_rope(q, cfg.rope_theta), _np_rope(k, cfg.rope_theta), v).reshape(S, -1)
        x = x + o @ w[p + "self_attn.o_proj.weight"].T
        m = rms(x, w[p + "post_attention_layernorm.weight"])
        g = m @ w[p + "mlp.gate_proj.weight"].T
        m = (g / (1 + np.exp(-g))) * (m @ w[p + "mlp.up_proj.weight"].T)
        x = x + m @ w[p + "mlp.down_proj.weight"].T
    x = rms(x, w["model.norm.weight"])
    head = w["model.embed_tokens.weight"] if cfg.tie_word_embeddings else w["lm_head.weight"]
    return x @ head.T


def _perturb_norms(cfg, w, seed=5):
    """Non-trivial norm weights / biases so the check sees them."""
    rng = np.random.default_rng(seed)
    w = dict(w)
    for n, v in w.items():
        if v.ndim == 1:
            w[n] = (v + rng.normal(0, 0.1, v.shape)).astype(np.float32)
    return w


def test_gpt2_matches_independent_numpy(gpt2_tiny):
    w = _perturb_norms(gpt2_tiny, random_weights(gpt2_tiny, 3, std=0.1))
    ids = _ids(gpt2_tiny, B=1, S=12)[0]
    got = R.forward(gpt2_tiny, w, ids)[0].double().numpy()
    np.testing.assert_allclose(got, _np_gpt2(gpt2_tiny, w, ids.numpy()), atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("kv", [2, 1, 4])
def test_llama_matches_independent_numpy(llama_tiny, kv):
    cfg = llama_tiny.replace(num_kv_heads=kv)
    w = _perturb_norms(cfg, random_weights(cfg, 4, std=0.1))
    ids = _ids(cfg, B=1, S=12)[0]
    got = R.forward(cfg, w, ids)[0].double().numpy()
    np.testing.assert_allclose(got, _np_llama(cfg, w, ids.numpy()), atol=2e-5, rtol=1e-4)


# ----------------------------------------------------------------------------------------------- properties


@pytest.mark.parametrize("model", ["gpt2_tiny", "llama_tiny"])
def test_loss_at_init_is_about_ln_vocab(model, request):
    cfg = request.getfixturevalue(model)
    w = random_weights(cfg, 0, std=0.02)
    ids = _ids(cfg, B=4, S=32)
    labels = _ids(cfg, B=4, S=32, seed=1)
    l = float(R.loss(cfg, w, ids, labels))
    assert abs(l - math.log(cfg.vocab_size)) / math.log(cfg.vocab_size) < 0.03


@pytest.mark.parametrize("model", ["gpt2_tiny", "llama_tiny"])
def test_causal(model, request):
    cfg = request.getfixturevalue(model)
    w = R.to_torch_params(cfg, random_weights(cfg, 0, std=0.1))
    ids = _ids(cfg, B=2, S=16)
    t = 9
    ids2 = ids.clone()
    ids2[:, t] = (ids2[:, t] + 1) % cfg.vocab_size
    a, b = R.forward(cfg, w, ids), R.forward(cfg, w, ids2)
    assert a.shape == (2, 16, cfg.vocab_size)
    torch.testing.assert_close(a[:, :t], b[:, :t], rtol=0, atol=1e-6)
    assert (a[:, t:] - b[:, t:]).abs().amax(-1).min() > 1e-4  # every later position sees the change


def test_gqa_equals_mha_with_duplicated_kv_heads(llama_tiny):
    cfg = llama_tiny  # 4 query heads, 2 kv heads
    assert cfg.num_kv_heads < cfg.num_heads
    rep, D = cfg.num_heads // cfg.num_kv_heads, cfg.head_dim
    w = R.to_torch_params(cfg, random_weights(cfg, 1, std=0.1))
    mha_cfg = cfg.replace(num_kv_heads=cfg.num_heads)
    mha = dict(w)
    for i in range(cfg.num_layers):
        for n in ("k_proj", "v_proj"):
            key = f"model.layers.{i}.self_attn.{n}.weight"
            mha[key] = w[key].view(cfg.num_kv_heads, D, -1).repeat_interleave(rep, 0).reshape(cfg.num_heads * D, -1)
    ids = _ids(cfg)
    torch.testing.assert_close(R.forward(cfg, w, ids), R.forward(mha_cfg, mha, ids), rtol=1e-5, atol=1e-5)


def test_rope_position_zero_is_identity_and_relative(llama_tiny):
    cos, sin = R.rope_cos_sin(llama_tiny, 10)
    assert cos.shape == (10, llama_tiny.head_dim)
    x = torch.randn(2, 4, 10, llama_tiny.head_dim)
    y = R.apply_rope(x, cos, sin)
    assert torch.equal(y[:, :, 0], x[:, :, 0])
    assert not torch.allclose(y[:, :, 1:], x[:, :, 1:])
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))  # rotation
    # <R(m) q, R(n) k> depends only on m - n.
    q, k = torch.randn(llama_tiny.head_dim), torch.randn(llama_tiny.head_dim)
    qs = R.apply_rope(q.expand(10, -1), cos, sin)
    ks = R.apply_rope(k.expand(10, -1), cos, sin)
    torch.testing.assert_close(qs[5] @ ks[2], qs[7] @ ks[4])
    torch.testing.assert_close(qs[3] @ ks[3], q @ k)
    # HF inv_freq formula.
    D = llama_tiny.head_dim
    torch.testing.assert_close(R.rope_inv_freq(llama_tiny), 1.0 / (10000.0 ** (torch.arange(0, D, 2).float() / D)))


def test_rope_scaling_variants(llama_tiny):
    lin = llama_tiny.replace(rope_scaling={"rope_type": "linear", "factor": 2.0})
    c2, _ = R.rope_cos_sin(lin, 8)
    c1, _ = R.rope_cos_sin(llama_tiny, 8)
    torch.testing.assert_close(c2[2], c1[1])
    l3 = llama_tiny.replace(rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                          "high_freq_factor": 4.0, "original_max_position_embeddings": 64})
    inv, base = R.rope_inv_freq(l3), R.rope_inv_freq(llama_tiny)
    assert inv[0] == base[0]  # high frequency untouched
    torch.testing.assert_close(inv[-1], base[-1] / 8)  # lowest frequency scaled by 1/factor


def test_llama_tied_vs_untied_head(llama_tiny):
    w = R.to_torch_params(llama_tiny, random_weights(llama_tiny, 2, std=0.1))
    tied_cfg = llama_tiny.replace(tie_word_embeddings=True)
    tied = {k: v for k, v in w.items() if k != "lm_head.weight"}
    untied = dict(tied, **{"lm_head.weight": w["model.embed_tokens.weight"].clone()})
    ids = _ids(llama_tiny)
    torch.testing.assert_close(R.forward(tied_cfg, tied, ids), R.forward(llama_tiny, untied, ids), rtol=0, atol=0)
    assert not torch.allclose(R.forward(llama_tiny, w, ids), R.forward(tied_cfg, tied, ids))
    # Tied: the embedding gradient has the head's contribution as well.
    labels = _ids(llama_tiny, seed=1)
    _, g_tied = R.loss_and_grads(tied_cfg, tied, ids, labels)
    _, g_untied = R.loss_and_grads(llama_tiny, untied, ids, labels)
    assert "lm_head.weight" not in g_tied
    torch.testing.assert_close(g_tied["model.embed_tokens.weight"],
                               g_untied["model.embed_tokens.weight"] + g_untied["lm_head.weight"],
                               rtol=1e-5, atol=1e-7)


def test_gelu_variants():
    x = torch.linspace(-6, 6, 1001)
    torch.testing.assert_close(R.activation("gelu_new")(x), torch.nn.functional.gelu(x, approximate="tanh"),
                               rtol=0, atol=1e-6)
    assert (R.activation("gelu_new")(x) - R.activation("gelu")(x)).abs().max() > 1e-4
    with pytest.raises(ValueError):
        R.activation("mish")


def test_gpt2_activation_from_config(gpt2_tiny):
    w = random_weights(gpt2_tiny, 0, std=0.3)
    ids = _ids(gpt2_tiny)
    a = R.forward(gpt2_tiny, w, ids)
    b = R.forward(gpt2_tiny.replace(activation="gelu"), w, ids)
    assert 0 < (a - b).abs().max() < 0.1


def test_loss_is_mean_ce_and_labels_are_not_shifted(gpt2_tiny):
    w = R.to_torch_params(gpt2_tiny, random_weights(gpt2_tiny, 0, std=0.1))
    ids, labels = _ids(gpt2_tiny), _ids(gpt2_tiny, seed=1)
    logp = torch.log_softmax(R.forward(gpt2_tiny, w, ids), -1)
    manual = -logp.gather(-1, labels.unsqueeze(-1)).mean()
    torch.testing.assert_close(R.loss(gpt2_tiny, w, ids, labels), manual)
    masked = labels.clone()
    masked[:, :4] = -100
    manual = -logp.gather(-1, labels.unsqueeze(-1))[:, 4:].mean()
    torch.testing.assert_close(R.loss(gpt2_tiny, w, ids, masked), manual)


def test_forward_input_validation(gpt2_tiny, llama_tiny):
    w = random_weights(gpt2_tiny, 0)
    with pytest.raises(ValueError, match="out of range"):
        R.forward(gpt2_tiny, w, torch.tensor([[0, 256]]))
    with pytest.raises(ValueError, match="n_positions"):
        R.forward(gpt2_tiny, w, torch.zeros(1, 65, dtype=torch.int64))
    with pytest.raises(ValueError, match="integers"):
        R.forward(gpt2_tiny, w, torch.zeros(1, 4))
    with pytest.raises(ValueError, match="missing"):
        R.forward(llama_tiny, w, torch.zeros(1, 4, dtype=torch.int64))
    # 1-D input is one sequence; numpy params/ids are accepted.
    assert R.forward(gpt2_tiny, w, np.arange(5)).shape == (1, 5, 256)


def test_loss_and_grads_names(llama_tiny):
    w = random_weights(llama_tiny, 0)
    l, g = R.loss_and_grads(llama_tiny, w, _ids(llama_tiny), _ids(llama_tiny, seed=1))
    assert isinstance(l, float)
    assert {k: tuple(v.shape) for k, v in g.items()} == dict(param_shapes(llama_tiny))
    assert all(torch.isfinite(v).all() for v in g.values())


def test_load_params_from_safetensors(tmp_path, gpt2_tiny):
    from llmir import safetensors as st

    w = random_weights(gpt2_tiny, 0)
    st.save_file({k: st.BF16.from_float(v) for k, v in w.items()}, tmp_path / "w.safetensors")
    p = R.load_params(gpt2_tiny, str(tmp_path / "w.safetensors"))
    assert p["wte.weight"].dtype == torch.float32
    torch.testing.assert_close(p["wte.weight"], torch.from_numpy(w["wte.weight"]), rtol=1e-2, atol=1e-3)
