"""llmir.save_state_dict / llmir.load_checkpoint, round-tripped through llm-run."""

import os

import numpy as np
import pytest

import llmir
from llmir import safetensors
from llmir.weights import save_tokens

B, S = 4, 16


def tiny():
    return llmir.GPT2(n_layer=2, n_embd=32, n_head=4, vocab_size=96, n_positions=32)


def hf_style_state_dict(weights):
    """What GPT2LMHeadModel.state_dict() holds: the transformer. prefix, attention-mask
    buffers and lm_head.weight sharing the embedding's storage."""
    sd = {"transformer." + n: w for n, w in weights.items()}
    for i in range(2):
        sd[f"transformer.h.{i}.attn.bias"] = np.tril(np.ones((1, 1, 32, 32), dtype=np.float32))
    sd["lm_head.weight"] = sd["transformer.wte.weight"]
    return sd


def test_numpy_state_dict_round_trip(tmp_path):
    weights = llmir.random_weights(tiny(), seed=1)
    sd = hf_style_state_dict(weights)
    path = tmp_path / "w.safetensors"
    for config in (None, tiny()):
        written = llmir.save_state_dict(sd, str(path), config=config)
        assert list(written) == list(weights)
        back = safetensors.load_file(str(path))
        assert sorted(back) == sorted(weights)
        for n, w in weights.items():
            np.testing.assert_array_equal(back[n], w)
    # An untied head (its own storage) is a parameter and is kept without a config.
    sd["lm_head.weight"] = sd["lm_head.weight"].copy()
    assert "lm_head.weight" in llmir.save_state_dict(sd, str(path))


def test_state_dict_errors_name_the_tensor(tmp_path):
    weights = dict(llmir.random_weights(tiny(), seed=1))
    weights["h.0.ln_1.weight"] = np.ones(31, dtype=np.float32)
    with pytest.raises(ValueError, match=r"'h.0.ln_1.weight' has shape \[31\], expected \[32\]"):
        llmir.save_state_dict(weights, str(tmp_path / "w.safetensors"), config=tiny())
    del weights["h.0.ln_1.weight"]
    with pytest.raises(ValueError, match="missing 1: h.0.ln_1.weight"):
        llmir.save_state_dict(weights, str(tmp_path / "w.safetensors"), config=tiny())
    with pytest.raises(ValueError, match="'wte.weight' given twice"):
        llmir.save_state_dict({"wte.weight": np.zeros(2), "transformer.wte.weight": np.zeros(2)},
                              str(tmp_path / "w.safetensors"))
    assert not os.path.exists(tmp_path / "w.safetensors")


def test_load_checkpoint_rejects_weights_files(tmp_path):
    path = tmp_path / "w.safetensors"
    llmir.save_state_dict(llmir.random_weights(tiny()), str(path))
    with pytest.raises(ValueError, match="is not an LLMIR checkpoint"):
        llmir.load_checkpoint(str(path))


def test_torch_state_dict_trains_and_checkpoints_like_the_reference(tmp_path):
    """A PyTorch state_dict saved by save_state_dict trains in llm-run; the
    checkpoint it writes after one step holds PyTorch's updated parameters."""
    torch = pytest.importorskip("torch")
    from llmir import reference as R

    try:
        llmir.tool_path("llm-run")
    except FileNotFoundError:
        if os.environ.get("LLMIR_REQUIRE_TOOLS") == "1":
            raise
        pytest.skip("LLMIR tools not built")
    cfg = tiny()
    weights = llmir.random_weights(cfg, seed=7)
    sd = {n: torch.from_numpy(w.copy()).requires_grad_() for n, w in hf_style_state_dict(weights).items()}
    sd["lm_head.weight"] = sd["transformer.wte.weight"]  # tied: one storage
    wpath, tpath = tmp_path / "w.safetensors", tmp_path / "t.npy"
    llmir.save_state_dict(sd, str(wpath), config=cfg)
    tokens = (np.arange(4000) * 13 % 96).astype(np.int32)
    save_tokens(tokens, str(tpath))

    prog = llmir.compile(cfg, batch=B, seq=S, train=True, workdir=str(tmp_path / "p"))
    ck = tmp_path / "ck"
    losses = [s["loss"] for s in prog.run(str(wpath), str(tpath), steps=1, lr=1e-3, save_checkpoint=str(ck))]
    ckpt = llmir.load_checkpoint(str(ck))
    assert ckpt.step == 1 and ckpt.model_type == "gpt2" and isinstance(ckpt.plan, str)
    assert sorted(ckpt.params()) == sorted(weights)
    assert sorted(ckpt.optimizer_state()) == sorted([n + ".exp_avg" for n in weights] +
                                                    [n + ".exp_avg_sq" for n in weights])
    ref_losses, ref_params = R.train(cfg, weights, tokens, 1, B, S, lr=1e-3)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    for n, ref in ref_params.items():
        ours, ref = ckpt[n], ref.detach().numpy()
        if n.endswith("attn.c_attn.bias"):  # the key bias's gradient is exactly 0 (softmax shift): noise
            h = cfg.hidden_size
            ours, ref = np.concatenate([ours[:h], ours[2 * h:]]), np.concatenate([ref[:h], ref[2 * h:]])
        assert np.linalg.norm(ours - ref) <= 1e-4 * np.linalg.norm(ref), n
    # The checkpoint's parameters are a weights file again.
    llmir.save_state_dict(ckpt.params(), str(tmp_path / "w2.safetensors"), config=cfg)
    assert list(prog.run(str(tmp_path / "w2.safetensors"), str(tpath), steps=1))


def test_builder_model_as_config(tmp_path):
    from test_builder import gpt2_block_model

    model = gpt2_block_model()
    weights = model.random_weights(seed=3)
    llmir.save_state_dict(hf_style_state_dict(weights), str(tmp_path / "w.safetensors"), config=model)
    weights.pop("ln_f.bias")
    with pytest.raises(ValueError, match="do not match the builder model: missing 1: ln_f.bias"):
        llmir.save_state_dict(weights, str(tmp_path / "w.safetensors"), config=model)
