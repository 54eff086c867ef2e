"""Program.run from Python: arrays and dicts as inputs, steps yielded while llm-run runs, llm-run flags by name,
temporary files removed; llmir.plot_log draws the loss and LR."""

import gc
import json
import os
import time

import numpy as np
import pytest

import llmir
from conftest import require_tools
from llmir import safetensors
from llmir.weights import save_tokens

require_tools()

B, S = 2, 16


@pytest.fixture(scope="module")
def prog(tmp_path_factory):
    cfg = llmir.GPT2(n_layer=1, n_embd=32, n_head=4, vocab_size=96, n_positions=32)
    p = llmir.compile(cfg, batch=B, seq=S, train=True, grad_norm=True,
                      workdir=str(tmp_path_factory.mktemp("prog")))
    return cfg, p


@pytest.fixture
def own_tmp(tmp_path, monkeypatch):
    """tempfile's directory for this test, so the runs' leftovers can be counted."""
    d = tmp_path / "tmp"
    d.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(d))
    return d


def test_arrays_and_dicts_run_like_files(prog, tmp_path, own_tmp):
    cfg, p = prog
    w = llmir.random_weights(cfg, seed=1)
    tokens = (np.arange(3000) * 7 % 96).astype(np.int32)
    safetensors.save_file(w, str(tmp_path / "w.safetensors"))
    save_tokens(tokens, str(tmp_path / "t.npy"))
    from_files = [s["loss"] for s in p.run(str(tmp_path / "w.safetensors"), str(tmp_path / "t.npy"), steps=3)]
    seen = []
    from_arrays = [s["loss"] for s in p.run(w, tokens, steps=3, on_step=seen.append)]
    assert from_arrays == from_files and [s["loss"] for s in seen] == from_files
    assert list(own_tmp.iterdir()) == []


def test_flags_by_name_and_eval_array(prog, own_tmp):
    cfg, p = prog
    w = llmir.random_weights(cfg, seed=2)
    tokens = (np.arange(3000) * 5 % 96).astype(np.int32)
    steps = list(p.run(w, tokens, steps=6, lr=1e-3, eval_data=tokens[:500], eval_every=3, lr_schedule="cosine",
                       warmup_steps=2, clip_grad_norm=1.0))
    assert [s["step"] for s in steps] == list(range(6))
    assert steps[0]["lr"] == pytest.approx(5e-4) and steps[5]["lr"] < steps[2]["lr"]
    assert [s["step"] for s in steps if s.get("eval_loss") is not None] == [2, 5]
    with pytest.raises(ValueError, match="not an llm-run option name"):
        list(p.run(w, tokens, **{"--lr": 1}))
    with pytest.raises(llmir.RunError, match="unknown option '--no-such-flag'"):
        list(p.run(w, tokens, no_such_flag=1))
    assert list(own_tmp.iterdir()) == []


def test_steps_arrive_while_running_and_close_stops_the_run(prog, own_tmp):
    """The first step arrives long before a 100000-step run could end; closing the generator stops llm-run and
    removes the temporary directory."""
    cfg, p = prog
    gen = p.run(llmir.random_weights(cfg), (np.arange(5000) % 96).astype(np.int32), steps=100000)
    t0 = time.monotonic()
    first = next(gen)
    elapsed = time.monotonic() - t0
    assert first["step"] == 0 and elapsed < 60
    assert len(list(own_tmp.iterdir())) == 1  # the run's inputs and log, while it runs
    gen.close()
    assert list(own_tmp.iterdir()) == []


def test_failed_run_cleans_up(prog, own_tmp):
    cfg, p = prog
    bad = {n: t for n, t in llmir.random_weights(cfg).items() if n != "wte.weight"}
    with pytest.raises(llmir.RunError, match="wte.weight"):
        list(p.run(bad, np.arange(100, dtype=np.int32) % 96))
    assert list(own_tmp.iterdir()) == []


def test_compile_without_workdir_removes_it_with_the_program(own_tmp):
    cfg = llmir.GPT2(n_layer=1, n_embd=32, n_head=4, vocab_size=96, n_positions=32)
    p = llmir.compile(cfg, batch=B, seq=S)
    assert os.path.exists(p.path)
    del p
    gc.collect()
    assert list(own_tmp.iterdir()) == []


def test_plot_log_draws_loss_eval_and_lr(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib.image

    log = [{"step": i, "loss": 5.0 - 0.01 * i, "lr": 1e-3 * min(1, (i + 1) / 10),
            "eval_loss": (5.1 - 0.01 * i) if i % 50 == 49 else None} for i in range(300)]
    png = llmir.plot_log(log, tmp_path / "loss.png", title="tiny")
    assert png == str(tmp_path / "loss.png")
    data = (tmp_path / "loss.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10000
    img = matplotlib.image.imread(str(tmp_path / "loss.png"))
    assert img.shape[0] >= 400 and img[..., :3].std() > 0.05  # two panels, lines drawn
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(s) + "\n" for s in log[:20]))
    small = llmir.plot_log(str(tmp_path / "log.jsonl"), tmp_path / "small.png")
    assert os.path.getsize(small) > 5000
    with pytest.raises(ValueError, match="no steps"):
        llmir.plot_log([], tmp_path / "empty.png")
