"""The Python driver (llmir.compile / Program.run) against the PyTorch oracle."""

import os
import shutil

import numpy as np
import pytest

from conftest import REPO, require_tools

torch = pytest.importorskip("torch")

import llmir  # noqa: E402
from llmir import reference as R  # noqa: E402
from llmir import safetensors  # noqa: E402
from llmir.weights import save_tokens  # noqa: E402

require_tools()

B, S = 4, 16


def tiny():
    return llmir.GPT2(n_layer=2, n_embd=32, n_head=4, vocab_size=96, n_positions=32)


def test_models_validate():
    assert tiny().is_gpt2
    llama = llmir.Llama(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                        num_attention_heads=4, num_key_value_heads=2, vocab_size=64)
    assert not llama.is_gpt2
    with pytest.raises(ValueError):
        llmir.GPT2(n_embd=30, n_head=4)
    assert llmir.from_hf_config(os.path.join(REPO, "examples", "models", "gpt2-tiny.json")).is_gpt2


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed")
def test_compile_and_train_dp2_tp2_matches_reference(tmp_path):
    cfg = tiny()
    weights = llmir.random_weights(cfg, seed=5)
    tokens = (np.arange(4000) * 7 % 96).astype(np.int32)
    wpath, tpath = tmp_path / "w.safetensors", tmp_path / "t.npy"
    safetensors.save_file(weights, str(wpath))
    save_tokens(tokens, str(tpath))

    prog = llmir.compile(cfg, llmir.Plan(dp=2, tp=2), batch=B, seq=S, train=True,
                         workdir=str(tmp_path))
    mem = prog.memory()
    assert mem and all(v > 0 for v in mem.values()), mem
    steps = list(prog.run(str(wpath), str(tpath), steps=3, lr=1e-3, weight_decay=0.1))
    assert [s["step"] for s in steps] == [0, 1, 2]
    ref, _ = R.train(cfg, weights, tokens, 3, B, S, lr=1e-3, weight_decay=0.1)
    np.testing.assert_allclose([s["loss"] for s in steps], ref, rtol=1e-4)

    assert "tp" in prog.comm_report()
    assert prog.explain()


def test_compile_uses_replaced_fields(tmp_path):
    prog = llmir.compile(tiny().replace(num_layers=1), batch=B, seq=S, workdir=str(tmp_path))
    ir = open(os.path.join(str(tmp_path), "model.mlir")).read()
    assert "h.0.attn" in ir and "h.1.attn" not in ir
    assert prog.config["n_layer"] == 1


def test_impossible_plan_is_a_compile_error(tmp_path):
    # 4 heads cannot be split over tp=3: the partitioner names the op and reason.
    with pytest.raises(llmir.CompileError, match="3"):
        llmir.compile(tiny(), llmir.Plan(tp=3), batch=B, seq=S, workdir=str(tmp_path))


def test_run_error_names_the_problem(tmp_path):
    prog = llmir.compile(tiny(), batch=B, seq=S, workdir=str(tmp_path))
    with pytest.raises(llmir.RunError):
        list(prog.run(str(tmp_path / "missing.safetensors"), str(tmp_path / "missing.npy")))


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed")
@pytest.mark.skipif(not os.path.exists("/usr/share/common-licenses/GPL-3"), reason="no corpus")
def test_char_level_example_loss_falls(tmp_path):
    """examples/python/train_tiny.py: exits 0 only when train and held-out loss fall."""
    import subprocess
    import sys
    # A --workdir that does not exist yet is created; run from another directory.
    res = subprocess.run([sys.executable, os.path.join(REPO, "examples", "python", "train_tiny.py"),
                          "--steps", "150", "--workdir", str(tmp_path / "new" / "dir")],
                         capture_output=True, text=True, timeout=600, cwd=str(tmp_path))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "held-out loss" in res.stdout


MLP_ONLY = {"h.*.mlp.c_fc.weight": "column", "h.*.mlp.c_proj.weight": "row",
            "h.*": "replicate", "wte.weight": "replicate"}


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed")
def test_rules_plan_trains_like_the_reference(tmp_path):
    """Python-chosen sharding (only the MLPs split over tp=2) trains to PyTorch's curve."""
    cfg = tiny()
    weights = llmir.random_weights(cfg, seed=6)
    tokens = (np.arange(4000) * 11 % 96).astype(np.int32)
    wpath, tpath = tmp_path / "w.safetensors", tmp_path / "t.npy"
    safetensors.save_file(weights, str(wpath))
    save_tokens(tokens, str(tpath))
    plan = llmir.Plan(tp=2, rules=MLP_ONLY, vocab_parallel=False)
    prog = llmir.compile(cfg, plan, batch=B, seq=S, train=True, workdir=str(tmp_path))
    assert "strategy 'rules'" in prog.explain()
    steps = [s["loss"] for s in prog.run(str(wpath), str(tpath), steps=3, lr=1e-3)]
    ref, _ = R.train(cfg, weights, tokens, 3, B, S, lr=1e-3)
    np.testing.assert_allclose(steps, ref, rtol=1e-4)


def test_rules_errors_name_the_rule(tmp_path):
    with pytest.raises(llmir.CompileError, match="no linear weight matches line 1: 'lm_head.weight'"):
        llmir.compile(tiny(), llmir.Plan(tp=2, rules={"lm_head.weight": "replicate"}),
                      batch=B, seq=S, workdir=str(tmp_path))
    with pytest.raises(llmir.CompileError, match="asks for a column-parallel linear, but its input is split"):
        llmir.compile(tiny(), llmir.Plan(tp=2, rules={"h.*.attn.c_proj.weight": "column"}),
                      batch=B, seq=S, workdir=str(tmp_path))
    with pytest.raises(ValueError, match="single words"):
        llmir.Plan(tp=2, rules={"h.* x": "column"}).option(str(tmp_path))
