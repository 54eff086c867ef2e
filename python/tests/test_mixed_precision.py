"""Mixed precision (--llm-mixed-precision compute=bf16) end to end on CPU ranks.

The oracle is the PyTorch reference with the same cast points (reference.train(..., compute="bf16"): every
parameter read and every op result rounded to bf16 where the IR casts, f32 master weights and AdamW moments).
- the 1-rank bf16 program follows it for 10 AdamW steps (rel 1e-2; in practice ~1e-4),
- every layout (dp, tp, dp·tp, tp·sp, dp·zero1, pp 1F1B, pp interleaved) follows the 1-rank bf16 run (rel 1e-3),
- the f32 program of the same weights stays within 2e-2 of the bf16 one,
- a bf16 (and an f16) inference program (weights and KV cache in that type) generates the reference's greedy
  tokens.
"""

import json
import re
import shutil

import numpy as np
import pytest

from conftest import model_path

torch = pytest.importorskip("torch")

from test_e2e_cpu import LR, WD, run, tool  # noqa: E402
from llmir import config, reference, safetensors  # noqa: E402
from llmir.weights import random_tokens, random_weights, save_tokens  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed")

BATCH, SEQ, STEPS, LAYERS = 8, 16, 10, 4


def tiny_model(name, d, seed):
    """A LAYERS-layer copy of the tiny config `name` in `d`, random weights and a repeating token sequence the model
    learns within a few steps (random tokens would not show training): {dir, cfg_path, cfg, weights, tokens,
    params, data, runs}."""
    raw = json.load(open(model_path(name)))
    raw["n_layer" if "n_layer" in raw else "num_hidden_layers"] = LAYERS
    cfg_path = d / "config.json"
    cfg_path.write_text(json.dumps(raw))
    cfg = config.load_config(str(cfg_path))
    weights, tokens = d / "w.safetensors", d / "t.npy"
    safetensors.save_file(random_weights(cfg, seed=seed), str(weights))
    save_tokens(np.tile(random_tokens(cfg.vocab_size, 40, seed=seed + 1), 100), str(tokens))
    return {"dir": d, "cfg_path": cfg_path, "cfg": cfg, "weights": weights, "tokens": tokens,
            "params": reference.load_params(cfg, str(weights)), "data": np.load(tokens), "runs": {}}


@pytest.fixture(scope="module", params=["gpt2-tiny", "llama-tiny"])
def model(request, tmp_path_factory):
    """A 4-layer tiny model, its weights and tokens, and the reference losses (bf16 cast points and f32)."""
    m = tiny_model(request.param, tmp_path_factory.mktemp(request.param + "-bf16"), 11)
    m["ref"], _ = reference.train(m["cfg"], m["params"], m["data"], STEPS, BATCH, SEQ, lr=LR, weight_decay=WD,
                                  compute="bf16")
    return m


def compile_program(cfg_path, out, plan, compute="bf16"):
    imp = run([tool("llm-translate"), "--import-hf-config", str(cfg_path), "--batch", str(BATCH),
               "--seq", str(SEQ)])
    assert imp.returncode == 0, imp.stderr
    passes = ([f"--llm-mixed-precision=compute={compute}"] if compute != "f32" else []) + \
        ([f"--llm-partition={plan}"] if plan else []) + \
        ["--tfm-build-train-step", "--llm-pipeline-split", "--llm-lower-to-exec"]
    low = run([tool("llm-opt"), *passes], input=imp.stdout)
    assert low.returncode == 0, low.stderr
    exp = run([tool("llm-translate"), "--export-program", "-o", str(out)], input=low.stdout)
    assert exp.returncode == 0, exp.stderr
    return low.stdout


def train(m, plan, ranks, compute="bf16"):
    key = (plan, compute)
    if key not in m["runs"]:
        tag = f"{compute}-{plan}".replace(" ", "_").replace("=", "")
        prog, log = m["dir"] / f"{tag}.llmir", m["dir"] / f"{tag}.jsonl"
        compile_program(m["cfg_path"], prog, plan, compute)
        res = run(["mpirun", "--oversubscribe", "--allow-run-as-root", "-np", str(ranks), tool("llm-run"),
                   str(prog), "--weights", str(m["weights"]), "--data", str(m["tokens"]), "--steps", str(STEPS),
                   "--lr", str(LR), "--weight-decay", str(WD), "--log-json", str(log), "--quiet",
                   "--timeout", "60"], timeout=600)
        assert res.returncode == 0, res.stderr
        m["runs"][key] = [json.loads(line)["loss"] for line in log.read_text().splitlines()]
    return m["runs"][key]


def assert_close(ours, ref, rtol, what):
    assert len(ours) == len(ref) == STEPS, what
    worst = max(abs(a - b) / abs(b) for a, b in zip(ours, ref))
    print(f"{what}: max rel diff {worst:.2e} (tol {rtol:g}); losses {ours[0]:.4f} -> {ours[-1]:.4f}")
    for step, (a, b) in enumerate(zip(ours, ref)):
        assert abs(a - b) <= rtol * abs(b), (what, step, a, b)
    assert ours[-1] < 0.9 * ours[0], (what, "does not train", ours)


def test_single_rank_follows_the_reference(model):
    assert_close(train(model, "", 1), model["ref"], 1e-2, "1 rank bf16 vs reference")


def test_f32_program_is_close(model):
    assert_close(train(model, "", 1), train(model, "", 1, compute="f32"), 2e-2, "bf16 vs f32 program")


# The layouts every mixed-precision mode is checked in (test_loss_scaling.py too): (plan, ranks).
LAYOUTS = [
    ("dp=2", 2),
    ("tp=2", 2),
    ("dp=2 tp=2", 4),
    ("tp=2 sp=true", 2),
    ("dp=2 zero=1", 2),
    ("pp=2 microbatches=4 schedule=1f1b", 2),
    ("pp=2 vpp=2 microbatches=4 schedule=interleaved", 2),
]


@pytest.mark.parametrize("plan,ranks", LAYOUTS)
def test_layouts_follow_the_single_rank_run(model, plan, ranks):
    assert_close(train(model, plan, ranks), train(model, "", 1), 1e-3, plan)


@pytest.mark.parametrize("plan,ranks", [("dp=2 zero=3", 2),
                                        ("dp=2 tp=2 zero=3 reshard-after-forward=false", 4)])
def test_zero3_gathers_the_cast(model, plan, ranks, tmp_path):
    """ZeRO-3 under bf16: each f32 master chunk is cast to bf16 and the bf16
    chunk is gathered (bf16 on the wire), and the run follows the 1-rank bf16 run."""
    ir = compile_program(model["cfg_path"], tmp_path / "z.llmir", plan)
    params = re.findall(r"(%\d+) = exec.param \"[^\"]+\" at \d+ .*: <(\d+)xf32>", ir)
    assert params, "ZeRO-3 parameters are flat f32 chunks"
    for buf, n in params:
        assert re.search(rf"\"cast\" ins\({buf}\) .*<{n}xf32>\) -> !exec.buffer<{n}xbf16>", ir), buf
    gathers = re.findall(r"exec.all_gather %\d+, %\d+ over \"dp\" stream 1 : <\d+x(\w+)>", ir)
    assert gathers and set(gathers) == {"bf16"}, gathers
    assert_close(train(model, plan, ranks), train(model, "", 1), 1e-3, plan)


def test_program_holds_bf16_activations_and_f32_masters(model, tmp_path):
    ir = compile_program(model["cfg_path"], tmp_path / "p.llmir", "dp=2")
    assert 'exec.kernel "cast"' in ir
    assert "xbf16" in ir
    # Parameters (masters) and AdamW moments are f32.
    for line in ir.splitlines():
        if "exec.param" in line or "exec.state" in line:
            assert "xbf16" not in line, line


@pytest.mark.parametrize("plan,ranks,compute", [("", 1, "bf16"), ("tp=2", 2, "bf16"), ("", 1, "f16")])
def test_generation_matches_the_reference(plan, ranks, compute, tmp_path):
    cfg_path = model_path("llama-tiny")
    cfg = config.load_config(cfg_path)
    weights = tmp_path / "w.safetensors"
    safetensors.save_file(random_weights(cfg, seed=3), str(weights))
    imp = run([tool("llm-translate"), "--import-hf-config", cfg_path, "--inference", "--batch", "2",
               "--max-seq", "24", "--prompt-len", "6"])
    assert imp.returncode == 0, imp.stderr
    low = run([tool("llm-opt"), f"--llm-mixed-precision=compute={compute}"] +
              ([f"--llm-partition={plan}"] if plan else []) +
              ["--llm-lower-to-exec"], input=imp.stdout)
    assert low.returncode == 0, low.stderr
    prog = tmp_path / "gen.llmir"
    exp = run([tool("llm-translate"), "--export-program", "-o", str(prog)], input=low.stdout)
    assert exp.returncode == 0, exp.stderr
    prompts = [[1, 5, 9, 17, 0, 0], [1, 7, 30, 2, 44, 3]]
    np.save(tmp_path / "p.npy", np.array(prompts, dtype=np.int64))
    out = tmp_path / "ids.npy"
    res = run(["mpirun", "--oversubscribe", "--allow-run-as-root", "-np", str(ranks), tool("llm-run"),
               str(prog), "--weights", str(weights), "--generate", "--prompt", str(tmp_path / "p.npy"),
               "--pad-id", "0", "--max-new-tokens", "8", "--out", str(out), "--quiet"], timeout=300)
    assert res.returncode == 0, res.stderr
    params = reference.load_params(cfg, str(weights))
    want = reference.generate(cfg, params, [p[:4] for p in prompts[:1]] + [prompts[1]], 8, pad_id=0,
                              compute=compute)
    assert np.load(out).tolist() == want


@pytest.mark.parametrize("name", ["gpt2-tiny", "llama-tiny"])
def test_eval_loss_has_the_reference_cast_points(name, tmp_path):
    """The forward alone (no training to blur it): the bf16 program's loss equals the reference with the same cast
    points far more closely than the bf16 and f32 references differ, so the test can tell where the IR rounds.
    Unfused GEMM epilogues: a fused gemm_bias_gelu applies the GELU to the f32 pre-activation (as cuBLASLt's epilogue
    does), not to its bf16 rounding, one cast point fewer (test_gemm_epilogue.py checks it against the reference)."""
    cfg_path = model_path(name)
    cfg = config.load_config(cfg_path)
    weights, tokens = tmp_path / "w.safetensors", tmp_path / "t.npy"
    safetensors.save_file(random_weights(cfg, seed=11), str(weights))
    data = np.tile(random_tokens(cfg.vocab_size, 40, seed=12), 100)
    save_tokens(data, str(tokens))
    imp = run([tool("llm-translate"), "--import-hf-config", cfg_path, "--batch", str(BATCH), "--seq", str(SEQ)])
    low = run([tool("llm-opt"), "--llm-mixed-precision", "--llm-lower-to-exec=fuse-epilogues=false"],
              input=imp.stdout)
    assert low.returncode == 0, low.stderr
    prog, log = tmp_path / "eval.llmir", tmp_path / "eval.jsonl"
    exp = run([tool("llm-translate"), "--export-program", "-o", str(prog)], input=low.stdout)
    assert exp.returncode == 0, exp.stderr
    res = run([tool("llm-run"), str(prog), "--weights", str(weights), "--data", str(tokens), "--steps", "1",
               "--eval", "--log-json", str(log), "--quiet"], timeout=300)
    assert res.returncode == 0, res.stderr
    ours = json.loads(log.read_text().splitlines()[0])["loss"]
    params = reference.load_params(cfg, str(weights))
    x, y = reference.batch_for_step(data, 0, BATCH, SEQ)
    ref_bf16 = float(reference.loss(cfg, params, x, y, compute="bf16"))
    ref_f32 = float(reference.loss(cfg, params, x, y))
    gap = abs(ref_bf16 - ref_f32)
    assert gap > 1e-6, "the bf16 and f32 references must differ for this test to mean anything"
    assert abs(ours - ref_bf16) < 0.05 * gap, (ours, ref_bf16, ref_f32)
