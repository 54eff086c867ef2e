import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import model_path  # noqa: E402
from llmir import reference as R  # noqa: E402
from llmir import safetensors as st  # noqa: E402
from llmir.weights import random_weights, save_tokens  # noqa: E402


def test_batch_for_step_windows():
    tokens = np.arange(10, dtype=np.int32)
    x, y = R.batch_for_step(tokens, 0, 2, 3)
    assert x.dtype == torch.int64 and x.shape == (2, 3)
    assert x.tolist() == [[0, 1, 2], [3, 4, 5]] and y.tolist() == [[1, 2, 3], [4, 5, 6]]
    x, y = R.batch_for_step(tokens, 1, 2, 3)  # window 6..12 wraps
    assert x.tolist() == [[6, 7, 8], [9, 0, 1]] and y.tolist() == [[7, 8, 9], [0, 1, 2]]
    x5, _ = R.batch_for_step(tokens, 5, 2, 3)  # start 30 == 0 mod 10
    assert x5.tolist() == [[0, 1, 2], [3, 4, 5]]
    x, y = R.batch_for_step(np.array([7, 8, 9]), 0, 1, 5)  # window longer than the data
    assert x.tolist() == [[7, 8, 9, 7, 8]] and y.tolist() == [[8, 9, 7, 8, 9]]
    x, y = R.batch_for_step(torch.arange(100), 3, 4, 8)
    assert x[0, 0] == 96 and x[0, 4] == 0 and y[3, 7] == (3 * 32 + 32) % 100
    with pytest.raises(ValueError):
        R.batch_for_step(np.array([]), 0, 1, 1)
    with pytest.raises(ValueError):
        R.batch_for_step(np.zeros(5), 0, 1, 1)  # float tokens


def _repetitive(n=2048, period=8):
    return (np.arange(n) * 37 % 251)[np.arange(n) % period].astype(np.int32)


@pytest.mark.parametrize("model", ["gpt2_tiny", "llama_tiny"])
def test_train_loss_decreases(model, request):
    cfg = request.getfixturevalue(model)
    w = random_weights(cfg, 0)
    before = {k: v.copy() for k, v in w.items()}
    losses, final = R.train(cfg, w, _repetitive(), steps=20, B=4, S=16, lr=3e-3, weight_decay=0.1)
    assert len(losses) == 20 and all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0], losses
    assert set(final) == set(w)
    for k in w:  # inputs untouched
        np.testing.assert_array_equal(w[k], before[k])
    assert not torch.equal(final["h.0.attn.c_attn.weight" if cfg.is_gpt2 else "model.norm.weight"],
                           torch.from_numpy(before["h.0.attn.c_attn.weight" if cfg.is_gpt2 else "model.norm.weight"]))


def test_train_matches_handwritten_adamw(llama_tiny):
    """Two steps of train() equal a hand-written AdamW (betas .9/.95, eps 1e-8, decoupled wd on ndim >= 2)."""
    cfg = llama_tiny.replace(mlp_bias=True)  # 1-D biases besides the norms
    w = {k: torch.from_numpy(v).double() for k, v in random_weights(cfg, 0, std=0.05).items()}
    tokens = np.random.default_rng(0).integers(0, 256, size=300)
    lr, wd, b1, b2, eps = 1e-2, 0.1, 0.9, 0.95, 1e-8
    p = {k: v.clone() for k, v in w.items()}
    m = {k: torch.zeros_like(v) for k, v in w.items()}
    v2 = {k: torch.zeros_like(v) for k, v in w.items()}
    manual_losses = []
    for step in range(2):
        x, y = R.batch_for_step(tokens, step, 2, 8)
        l, g = R.loss_and_grads(cfg, {k: t.float() for k, t in p.items()}, x, y)
        manual_losses.append(l)
        for k in p:
            gk = g[k].double()
            if p[k].dim() >= 2:
                p[k] = p[k] * (1 - lr * wd)
            m[k] = b1 * m[k] + (1 - b1) * gk
            v2[k] = b2 * v2[k] + (1 - b2) * gk * gk
            mhat, vhat = m[k] / (1 - b1 ** (step + 1)), v2[k] / (1 - b2 ** (step + 1))
            p[k] = p[k] - lr * mhat / (vhat.sqrt() + eps)
    losses, final = R.train(cfg, {k: t.float() for k, t in w.items()}, tokens, 2, 2, 8, lr=lr, weight_decay=wd)
    np.testing.assert_allclose(losses, manual_losses, rtol=1e-6)
    for k in p:
        torch.testing.assert_close(final[k].double(), p[k], rtol=1e-5, atol=1e-6)
    # A 1-D parameter with zero gradient keeps its value: no weight decay on it.
    groups = R.param_groups(R.to_torch_params(cfg, w), 0.1)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    assert all(t.dim() >= 2 for t in groups[0]["params"]) and all(t.dim() == 1 for t in groups[1]["params"])


def test_reference_cli(tmp_path):
    from llmir import make_inputs

    w, t, log = tmp_path / "w.safetensors", tmp_path / "t.npy", tmp_path / "log.jsonl"
    assert make_inputs.main(["--config", model_path("gpt2-tiny"), "--weights", str(w)]) == 0
    save_tokens(_repetitive(), t)
    rc = R.main(["--config", model_path("gpt2-tiny"), "--weights", str(w), "--data", str(t), "--steps", "3",
                 "--batch", "2", "--seq", "8", "--lr", "1e-3", "--log-json", str(log),
                 "--save-weights", str(tmp_path / "out.safetensors"), "--dump-grads", str(tmp_path / "g.safetensors")])
    assert rc == 0
    lines = [json.loads(s) for s in log.read_text().splitlines()]
    assert [d["step"] for d in lines] == [0, 1, 2]
    g_meta = st.read_metadata(tmp_path / "g.safetensors")
    np.testing.assert_allclose(float(g_meta["loss"]), lines[0]["loss"], rtol=1e-6)
    assert set(st.load_file(tmp_path / "out.safetensors")) == set(st.load_file(w))
    assert R.main(["--config", model_path("gpt2-tiny"), "--weights", str(tmp_path / "nope"), "--data", str(t),
                   "--steps", "1", "--batch", "1", "--seq", "4"]) == 2
