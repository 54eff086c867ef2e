"""Context parallelism (--llm-partition cp=N) end to end on CPU ranks: the
sequence split over cp in 2·cp zig-zag chunks, K/V all-gathered over cp (or
passed around the cp ring: cp-comm=ring), the loss and gradients summed over
cp; trains equal to single-device PyTorch.
"""

import shutil

import pytest

from conftest import model_path
from test_e2e_cpu import (RTOL, SEQ, TRAIN_BATCH, assert_trains_like_reference, compile_model,  # noqa: F401
                          model, run, tool)  # model: the fixture

STEPS = 6


def compile_training(cfg_path, out, plan):
    """config.json -> training .llmir (pipeline split: a no-op without pp)."""
    return compile_model(cfg_path, out, plan=plan, train=True, batch=TRAIN_BATCH, split=True)


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed")
@pytest.mark.parametrize("dp,cp,tp,pp", [(1, 2, 1, 1), (1, 2, 2, 1), (2, 2, 1, 1),
                                         (2, 2, 1, 2)])
def test_cp_training_matches_reference(model, tmp_path, dp, cp, tp, pp):
    name, cfg, weights, tokens = model
    plan = f"dp={dp} cp={cp} tp={tp}" + (f" pp={pp} microbatches=2" if pp > 1 else "")
    prog = compile_training(model_path(name), tmp_path / "t.llmir", plan)
    assert_trains_like_reference(model, tmp_path, dp * cp * tp * pp, plan, prog=prog, steps=STEPS)


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed")
@pytest.mark.parametrize("dp,cp,tp", [(1, 2, 1), (1, 4, 1), (1, 2, 2), (2, 2, 1)])
def test_cp_ring_training_matches_reference(model, tmp_path, dp, cp, tp):
    """cp-comm=ring: K/V chunks passed around the cp ring, partial attentions
    merged by log-sum-exp, dK/dV partials carried home; GPT-2 and LLaMA (GQA)."""
    name, cfg, weights, tokens = model
    plan = f"dp={dp} cp={cp} cp-comm=ring tp={tp}"
    prog = compile_training(model_path(name), tmp_path / "t.llmir", plan)
    assert_trains_like_reference(model, tmp_path, dp * cp * tp, plan, prog=prog, steps=STEPS)


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed")
@pytest.mark.parametrize("model", ["llama-tiny"], indirect=True)
def test_cp_ring_with_pipeline_matches_reference(model, tmp_path):
    """The ring composes with pp (each stage's attentions keep their ring) and
    micro-batches: cp2·pp2·dp2."""
    plan = "dp=2 cp=2 cp-comm=ring pp=2 microbatches=2"
    prog = compile_training(model_path(model[0]), tmp_path / "t.llmir", plan)
    assert_trains_like_reference(model, tmp_path, 8, plan, prog=prog, steps=STEPS)


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed")
@pytest.mark.parametrize("model", ["llama-tiny"], indirect=True)
@pytest.mark.parametrize("comm", ["allgather", "ring"])
def test_cp_with_sequence_parallel_matches_reference(model, tmp_path, comm):
    """cp2·tp2·sp: sp splits each cp rank's local (zig-zag) rows over tp in
    blocks; attention sees them gathered back in local order (RoPE models:
    learned positions are refused, test_cp_plan_errors)."""
    name = model[0]
    plan = f"cp=2 tp=2 sp=true cp-comm={comm}"
    prog = compile_training(model_path(name), tmp_path / "t.llmir", plan)
    assert_trains_like_reference(model, tmp_path, 4, plan, prog=prog, steps=STEPS)


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed")
def test_cp_ring_trains_like_allgather(tmp_path):
    """The ring and the all-gather compute the same attention (only the
    summation order differs): their losses agree to 1e-6 over 6 steps."""
    from llmir import config, safetensors
    from llmir.weights import random_tokens, random_weights, save_tokens
    from test_e2e_cpu import train_run
    cfg = config.load_config(model_path("llama-tiny"))
    weights, tokens = tmp_path / "w.safetensors", tmp_path / "t.npy"
    safetensors.save_file(random_weights(cfg, seed=3), str(weights))
    save_tokens(random_tokens(cfg.vocab_size, 1000, seed=4), str(tokens))
    losses = {}
    for comm in ("allgather", "ring"):
        prog = compile_training(model_path("llama-tiny"), tmp_path / f"{comm}.llmir",
                                f"cp=2 cp-comm={comm}")
        losses[comm] = train_run(prog, 2, weights, tokens, STEPS, tmp_path / f"{comm}.jsonl")
    print("allgather", losses["allgather"], "\nring     ", losses["ring"])
    for a, r in zip(losses["allgather"], losses["ring"]):
        assert abs(a - r) <= 1e-6 * abs(a), losses


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed")
@pytest.mark.parametrize("dp,cp,zero", [(2, 2, 1), (2, 2, 2), (2, 2, 3), (1, 2, 3)])
def test_cp_with_zero_matches_reference(model, tmp_path, dp, cp, zero):
    """ZeRO shards over dp (cp ranks keep replicas of the chunk), or over cp without dp."""
    plan = f"dp={dp} cp={cp} zero={zero}"
    prog = compile_training(model_path(model[0]), tmp_path / "t.llmir", plan)
    assert_trains_like_reference(model, tmp_path, dp * cp, plan, prog=prog, steps=10)


@pytest.mark.parametrize("name,plan,needle", [
    ("llama-tiny", "cp=3", "cannot split the sequence (16) into 2 x cp=3 equal chunks"),
    ("llama-tiny", "cp=0", "cp must be >= 1"),
    ("llama-tiny", "cp=2 cp-comm=ringg", "unknown cp-comm 'ringg' (expected allgather, ring)"),
    ("llama-tiny", "cp-comm=ring", "cp-comm=ring needs cp > 1"),
    ("gpt2-tiny", "cp=2 tp=2 sp=true",
     "learned position embeddings with cp=2 and sp=true are not supported"),
])
def test_cp_plan_errors(tmp_path, name, plan, needle):
    imp = run([tool("llm-translate"), "--import-hf-config", model_path(name),
               "--batch", "2", "--seq", str(SEQ)])
    assert imp.returncode == 0, imp.stderr
    res = run([tool("llm-opt"), f"--llm-partition={plan}"], input=imp.stdout)
    assert res.returncode != 0
    assert "error:" in res.stderr and needle in res.stderr, res.stderr


@pytest.mark.parametrize("name", ["gpt2-tiny", "llama-tiny"])
def test_cp_activation_memory_shrinks_by_cp(name):
    """The activations a training step keeps for its backward (the exec plan's
    saved_activation_peak_bytes) shrink ÷cp: every activation holds seq/cp
    tokens, except the K and V all-gathered whole for each layer's attention,
    which the backward reads too (their bytes grow by (1 - 1/cp) of the whole)."""
    import re
    from llmir import config
    cfg = config.load_config(model_path(name))
    batch, seq = 4, 64
    imp = run([tool("llm-translate"), "--import-hf-config", model_path(name),
               "--batch", str(batch), "--seq", str(seq)])
    assert imp.returncode == 0, imp.stderr
    kv_whole = 2 * cfg.num_layers * batch * seq * cfg.num_kv_heads * (cfg.hidden_size // cfg.num_heads) * 4
    saved = {}
    for cp in (1, 2, 4):
        low = run([tool("llm-opt"), f"--llm-partition=cp={cp}", "--tfm-build-train-step",
                   "--llm-lower-to-exec"], input=imp.stdout)
        assert low.returncode == 0, low.stderr
        saved[cp] = int(re.search(r"saved_activation_peak_bytes = (\d+)", low.stdout).group(1))
    print(f"{name}: saved activations cp=1 {saved[1]} B, cp=2 {saved[2]} B, cp=4 {saved[4]} B; "
          f"K/V whole {kv_whole} B")
    for cp in (2, 4):
        sequence_split = saved[cp] - kv_whole * (1 - 1 / cp)
        assert 0.7 / cp <= sequence_split / saved[1] <= 1.3 / cp, saved


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed")
@pytest.mark.parametrize("plan,ranks", [("cp=2 tp=2", 4), ("cp=2 zero=3", 2)])
def test_cp_checkpoint_resumes_in_any_layout(tmp_path, plan, ranks):
    """A checkpoint written under cp=2 tp=2 (or ZeRO-3 chunks over cp) holds the
    global tensors (cp ranks are replicas, like dp ones): resuming it in the same
    layout continues the run bit-identically, under dp=2 within the reference
    tolerance."""
    from llmir import config, safetensors
    from llmir.weights import random_tokens, random_weights, save_tokens
    from test_e2e_cpu import train_run
    cfg = config.load_config(model_path("llama-tiny"))
    weights, tokens = tmp_path / "w.safetensors", tmp_path / "t.npy"
    safetensors.save_file(random_weights(cfg, seed=3), str(weights))
    save_tokens(random_tokens(cfg.vocab_size, 1000, seed=4), str(tokens))
    a = compile_model(model_path("llama-tiny"), tmp_path / "a.llmir", plan=plan,
                      train=True, batch=TRAIN_BATCH)
    b = compile_model(model_path("llama-tiny"), tmp_path / "b.llmir", plan="dp=2",
                      train=True, batch=TRAIN_BATCH)
    straight = train_run(a, ranks, weights, tokens, 6, tmp_path / "s.jsonl")
    ck = tmp_path / "ck"
    train_run(a, ranks, weights, tokens, 3, tmp_path / "f.jsonl", "--save-checkpoint", str(ck))
    meta = safetensors.read_metadata(str(ck / "checkpoint.safetensors"))
    assert meta["step"] == "3", meta
    same = train_run(a, ranks, weights, tokens, 6, tmp_path / "r1.jsonl", "--resume", str(ck))
    assert same == straight[3:]
    other = train_run(b, 2, weights, tokens, 6, tmp_path / "r2.jsonl", "--resume", str(ck))
    for x, y in zip(other, straight[3:]):
        assert abs(x - y) <= RTOL * abs(y), (other, straight)
