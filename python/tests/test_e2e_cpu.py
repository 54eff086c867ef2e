"""End to end on CPU: HF config -> llm-translate -> llm-opt -> program file ->
llm-run, compared with the PyTorch reference on the same weights and data.

Needs the built tools (build/bin, or $LLMIR_BUILD_DIR/bin). scripts/test.sh
sets LLMIR_REQUIRE_TOOLS=1 so a missing build fails instead of skipping.
"""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from conftest import REPO, model_path

torch = pytest.importorskip("torch")

from llmir import config, reference  # noqa: E402
from llmir.weights import random_tokens, random_weights, save_tokens  # noqa: E402
from llmir import safetensors  # noqa: E402

BIN = os.path.join(os.environ.get("LLMIR_BUILD_DIR", os.path.join(REPO, "build")), "bin")
TOOLS = ["llm-translate", "llm-opt", "llm-run"]
if not all(os.path.exists(os.path.join(BIN, t)) for t in TOOLS):
    if os.environ.get("LLMIR_REQUIRE_TOOLS") == "1":
        raise RuntimeError(f"LLMIR tools not built in {BIN}")
    pytest.skip(f"LLMIR tools not built in {BIN}", allow_module_level=True)

BATCH, SEQ = 2, 16
RTOL = 1e-5


def tool(name):
    return os.path.join(BIN, name)


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def compile_model(cfg_path, out, *extra, plan=None, train=False, batch=BATCH,
                  train_options="", split=False):
    """config.json -> .llmir, through the same three tools a user runs (`split`: with
    --llm-pipeline-split, a no-op without pp)."""
    imp = run([tool("llm-translate"), "--import-hf-config", str(cfg_path),
               "--batch", str(batch), "--seq", str(SEQ), *extra])
    assert imp.returncode == 0, imp.stderr
    passes = ([f"--llm-partition={plan}"] if plan else []) + \
        ([f"--tfm-build-train-step{train_options}"] if train else []) + \
        (["--llm-pipeline-split"] if split else []) + ["--llm-lower-to-exec"]
    low = run([tool("llm-opt"), *passes], input=imp.stdout)
    assert low.returncode == 0, low.stderr
    exp = subprocess.run([tool("llm-translate"), "--export-program", "-o", str(out)],
                         input=low.stdout.encode(), capture_output=True)
    assert exp.returncode == 0, exp.stderr.decode()
    return out


@pytest.fixture(params=["gpt2-tiny", "llama-tiny"])
def model(request, tmp_path):
    name = request.param
    cfg = config.load_config(model_path(name))
    weights = tmp_path / "w.safetensors"
    tokens = tmp_path / "t.npy"
    safetensors.save_file(random_weights(cfg, seed=3), str(weights))
    save_tokens(random_tokens(cfg.vocab_size, 1000, seed=4), str(tokens))
    return name, cfg, weights, tokens


def test_eval_loss_matches_reference(model, tmp_path):
    name, cfg, weights, tokens = model
    prog = compile_model(model_path(name), tmp_path / "m.llmir")
    log = tmp_path / "log.jsonl"
    steps = 4
    res = run([tool("llm-run"), str(prog), "--weights", str(weights), "--data", str(tokens),
               "--steps", str(steps), "--eval", "--log-json", str(log)])
    assert res.returncode == 0, res.stderr
    assert f"step {steps}/{steps}" in res.stderr  # human progress line
    ours = [json.loads(line)["loss"] for line in log.read_text().splitlines()]
    assert len(ours) == steps

    params = reference.load_params(cfg, str(weights))
    data = np.load(tokens)
    for step, loss in enumerate(ours):
        x, y = reference.batch_for_step(data, step, BATCH, SEQ)
        with torch.no_grad():
            ref = float(reference.loss(cfg, params, x, y))
        assert abs(loss - ref) <= RTOL * abs(ref), (step, loss, ref)


def reference_losses(cfg, weights, tokens, steps):
    params = reference.load_params(cfg, str(weights))
    data = np.load(tokens)
    out = []
    for step in range(steps):
        x, y = reference.batch_for_step(data, step, BATCH, SEQ)
        with torch.no_grad():
            out.append(float(reference.loss(cfg, params, x, y)))
    return out


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed")
@pytest.mark.parametrize("dp,tp,sp", [(2, 1, False), (1, 2, False), (2, 2, False),
                                      (1, 2, True), (2, 2, True)])
def test_partitioned_loss_matches_reference(model, tmp_path, dp, tp, sp):
    """Every data/tensor/sequence-parallel layout gives the single-device loss."""
    name, cfg, weights, tokens = model
    prog = compile_model(model_path(name), tmp_path / "m.llmir",
                         plan=f"dp={dp} tp={tp} sp={str(sp).lower()}")
    log = tmp_path / "log.jsonl"
    steps = 3
    res = run(["mpirun", "--oversubscribe", "--allow-run-as-root", "-np", str(dp * tp),
               tool("llm-run"), str(prog), "--weights", str(weights), "--data", str(tokens),
               "--steps", str(steps), "--eval", "--log-json", str(log), "--timeout", "60"],
              timeout=300)
    assert res.returncode == 0, res.stderr
    ours = [json.loads(line)["loss"] for line in log.read_text().splitlines()]
    ref = reference_losses(cfg, weights, tokens, steps)
    assert len(ours) == steps
    for step, (a, b) in enumerate(zip(ours, ref)):
        assert abs(a - b) <= RTOL * abs(b), (dp, tp, step, a, b)


def test_logits_match_reference(model, tmp_path):
    name, cfg, weights, tokens = model
    prog = compile_model(model_path(name), tmp_path / "m.llmir", "--logits")
    out = tmp_path / "logits.npy"
    res = run([tool("llm-run"), str(prog), "--weights", str(weights), "--data", str(tokens),
               "--eval", "--quiet", "--logits-out", str(out)])
    assert res.returncode == 0, res.stderr
    ours = np.load(out)
    assert ours.shape == (BATCH, SEQ, cfg.vocab_size)
    params = reference.load_params(cfg, str(weights))
    x, _ = reference.batch_for_step(np.load(tokens), 0, BATCH, SEQ)
    with torch.no_grad():
        ref = reference.forward(cfg, params, x).numpy()
    scale = np.abs(ref).max()
    assert np.abs(ours - ref).max() <= RTOL * scale


# --- bad input: clear errors, never a crash --------------------------------

@pytest.fixture
def gpt2_run(tmp_path):
    cfg = config.load_config(model_path("gpt2-tiny"))
    weights = tmp_path / "w.safetensors"
    tokens = tmp_path / "t.npy"
    params = random_weights(cfg, seed=5)
    safetensors.save_file(params, str(weights))
    save_tokens(random_tokens(cfg.vocab_size, 500, seed=6), str(tokens))
    prog = compile_model(model_path("gpt2-tiny"), tmp_path / "m.llmir")
    return cfg, params, prog, weights, tokens


def llm_run(prog, weights, tokens, *extra, **kw):
    return run([tool("llm-run"), str(prog), "--weights", str(weights), "--data",
                str(tokens), "--eval", *extra], **kw)


def assert_clean_error(res, *needles):
    assert res.returncode != 0
    assert "error:" in res.stderr
    for n in needles:
        assert n in res.stderr, res.stderr
    for crash in ("Segmentation", "Aborted", "core dumped", "terminate called"):
        assert crash not in res.stderr, res.stderr


def test_truncated_and_corrupt_programs(gpt2_run, tmp_path):
    _, _, prog, weights, tokens = gpt2_run
    data = prog.read_bytes()
    trunc = tmp_path / "trunc.llmir"
    trunc.write_bytes(data[: len(data) // 2])
    assert_clean_error(llm_run(trunc, weights, tokens), "corrupt program file")
    bad_magic = tmp_path / "magic.llmir"
    bad_magic.write_bytes(data[:4] + b"XXXX" + data[8:])
    assert_clean_error(llm_run(bad_magic, weights, tokens), "not an LLMIR program file")
    rng = np.random.default_rng(0)
    for i in range(20):
        mutated = bytearray(data)
        for pos in rng.integers(8, len(data), size=8):
            mutated[pos] = int(rng.integers(0, 256))
        path = tmp_path / f"mut{i}.llmir"
        path.write_bytes(bytes(mutated))
        res = llm_run(path, weights, tokens)
        # A mutation may hit padding and still be valid; it must never crash.
        assert res.returncode in (0, 1), res.stderr


@pytest.mark.skipif(shutil.which("flatc") is None, reason="flatc not installed")
def test_wrong_version_is_rejected(gpt2_run, tmp_path):
    _, _, prog, weights, tokens = gpt2_run
    schema = os.path.join(REPO, "runtime", "schema", "program.fbs")
    res = run(["flatc", "--json", "--strict-json", "--raw-binary", "-o", str(tmp_path),
               schema, "--", str(prog)])
    assert res.returncode == 0, res.stderr
    doc = json.loads((tmp_path / "m.json").read_text())
    doc["version"] = 99
    (tmp_path / "v99.json").write_text(json.dumps(doc))
    res = run(["flatc", "--binary", "-o", str(tmp_path), schema, str(tmp_path / "v99.json")])
    assert res.returncode == 0, res.stderr
    out = tmp_path / "v99.llmir"  # flatc uses the schema's file_extension
    assert_clean_error(llm_run(out, weights, tokens), "program file version 99 is not supported",
                       "rebuild it with this llm-translate")


def test_bad_weights(gpt2_run, tmp_path):
    cfg, params, prog, _, tokens = gpt2_run
    missing = dict(params)
    del missing["h.1.mlp.c_fc.bias"]
    path = tmp_path / "missing.safetensors"
    safetensors.save_file(missing, str(path))
    assert_clean_error(llm_run(prog, path, tokens), "no tensor 'h.1.mlp.c_fc.bias'")

    wrong = dict(params)
    wrong["ln_f.weight"] = np.ones(cfg.hidden_size + 1, dtype=np.float32)
    path = tmp_path / "wrong.safetensors"
    safetensors.save_file(wrong, str(path))
    assert_clean_error(llm_run(prog, path, tokens), "'ln_f.weight'", "has shape 65x")

    path = tmp_path / "garbage.safetensors"
    path.write_bytes(b"\xff" * 64)
    assert_clean_error(llm_run(prog, path, tokens))


def test_bad_tokens_and_options(gpt2_run, tmp_path):
    cfg, _, prog, weights, _ = gpt2_run
    tokens = tmp_path / "oov.npy"
    save_tokens(np.full(100, cfg.vocab_size + 7, dtype=np.int32), str(tokens))
    assert_clean_error(llm_run(prog, weights, tokens), str(cfg.vocab_size + 7))
    assert_clean_error(run([tool("llm-run"), str(prog)]), "--weights is required")
    assert_clean_error(llm_run(prog, weights, tokens, "--steps", "zero"), "--steps")
    assert_clean_error(llm_run(prog, weights, tokens, "--bogus"), "unknown option '--bogus'")


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed")
def test_rank_count_must_match(gpt2_run):
    _, _, prog, weights, tokens = gpt2_run
    res = run(["mpirun", "--oversubscribe", "--allow-run-as-root", "-np", "2",
               tool("llm-run"), str(prog), "--weights", str(weights), "--data", str(tokens),
               "--eval"], timeout=120)
    assert res.returncode != 0
    assert "partitioned for 1 rank but 2 ranks were launched" in res.stderr, res.stderr
    # Printed once (every rank finds it), without the MPI_Abort banner.
    assert res.stderr.count("error:") == 1, res.stderr
    assert "MPI_ABORT" not in res.stderr, res.stderr


# --- training ----------------------------------------------------------------

TRAIN_BATCH, TRAIN_STEPS, LR, WD = 4, 10, 1e-3, 0.1


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed")
@pytest.mark.parametrize("dp,tp,zero,sp,recompute", [
    (1, 1, 0, False, "none"), (2, 1, 0, False, "none"), (1, 2, 0, False, "none"),
    (2, 2, 0, False, "none"), (2, 1, 1, False, "none"), (2, 2, 1, False, "none"),
    (1, 2, 0, True, "none"), (2, 2, 1, True, "none"),
    (1, 1, 0, False, "full"), (2, 2, 0, True, "full"),
    # ZeRO-2: each gradient reduce-scattered where it becomes final.
    (2, 1, 2, False, "none"), (2, 2, 2, True, "none"), (2, 1, 2, False, "full"),
    # ZeRO-3 (FSDP): parameters dp-sharded, gathered per layer ahead of use.
    (2, 1, 3, False, "none"), (2, 2, 3, False, "none"), (2, 2, 3, True, "full")])
def test_training_matches_reference(model, tmp_path, dp, tp, zero, sp, recompute):
    """fwd + bwd + AdamW steps under every layout give the single-device
    PyTorch loss curve (torch.optim.AdamW, betas (0.9, 0.95), weight decay on
    rank >= 2 parameters)."""
    assert_trains_like_reference(model, tmp_path, dp * tp,
                                 f"dp={dp} tp={tp} zero={zero} sp={str(sp).lower()} "
                                 f"recompute={recompute}")


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed")
@pytest.mark.parametrize("plan,ranks", [("dp=2 zero=3 reshard-after-forward=false", 2),
                                        ("dp=4 zero=3", 4)])
def test_zero3_variants_match_reference(model, tmp_path, plan, ranks):
    """ZeRO-3 keeping the forward's gathered parameters for the backward, and
    over 4 dp ranks."""
    assert_trains_like_reference(model, tmp_path, ranks, plan)


def assert_trains_like_reference(model, tmp_path, ranks, plan, prog=None, steps=TRAIN_STEPS):
    """`plan`'s training program (compiled here unless `prog` is given) on `ranks` MPI ranks gives the
    single-device PyTorch losses (rel RTOL) over `steps` AdamW steps."""
    name, cfg, weights, tokens = model
    if prog is None:
        prog = compile_model(model_path(name), tmp_path / "t.llmir", plan=plan,
                             train=True, batch=TRAIN_BATCH)
    log = tmp_path / "log.jsonl"
    res = run(["mpirun", "--oversubscribe", "--allow-run-as-root", "-np", str(ranks),
               tool("llm-run"), str(prog), "--weights", str(weights), "--data", str(tokens),
               "--steps", str(steps), "--lr", str(LR), "--weight-decay", str(WD),
               "--log-json", str(log), "--timeout", "60", "--quiet"], timeout=300)
    assert res.returncode == 0, res.stderr
    ours = [json.loads(line)["loss"] for line in log.read_text().splitlines()]
    params = reference.load_params(cfg, str(weights))
    ref, _ = reference.train(cfg, params, np.load(tokens), steps, TRAIN_BATCH, SEQ,
                             lr=LR, weight_decay=WD)
    assert len(ours) == steps
    for step, (a, b) in enumerate(zip(ours, ref)):
        assert abs(a - b) <= RTOL * abs(b), (plan, step, a, b)
    assert ours[-1] != ours[0]  # the parameters did change


def test_eval_flag_rejects_training_programs(gpt2_run, tmp_path):
    _, _, _, weights, tokens = gpt2_run
    prog = compile_model(model_path("gpt2-tiny"), tmp_path / "t.llmir", train=True)
    assert_clean_error(llm_run(prog, weights, tokens), "is a training step")


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed")
def test_padded_vocab_training(tmp_path):
    """A vocab tp does not divide (257 over tp=2) is padded with zero rows;
    the masked vocab-parallel cross-entropy still gives the reference curve."""
    cfg_dict = json.load(open(model_path("gpt2-tiny")))
    cfg_dict["vocab_size"] = 257
    cfg_path = tmp_path / "gpt2-257.json"
    cfg_path.write_text(json.dumps(cfg_dict))
    cfg = config.load_config(str(cfg_path))
    weights, tokens = tmp_path / "w.safetensors", tmp_path / "t.npy"
    safetensors.save_file(random_weights(cfg, seed=7), str(weights))
    # Make sure the last token (which lives in the padded rank's block) occurs.
    data = random_tokens(cfg.vocab_size, 1000, seed=8)
    data[::7] = cfg.vocab_size - 1
    save_tokens(data, str(tokens))
    prog = compile_model(str(cfg_path), tmp_path / "t.llmir", plan="dp=1 tp=2",
                         train=True, batch=TRAIN_BATCH)
    log = tmp_path / "log.jsonl"
    res = run(["mpirun", "--oversubscribe", "--allow-run-as-root", "-np", "2",
               tool("llm-run"), str(prog), "--weights", str(weights), "--data", str(tokens),
               "--steps", "4", "--lr", str(LR), "--log-json", str(log), "--quiet"],
              timeout=300)
    assert res.returncode == 0, res.stderr
    ours = [json.loads(line)["loss"] for line in log.read_text().splitlines()]
    ref, _ = reference.train(cfg, reference.load_params(cfg, str(weights)), data, 4,
                             TRAIN_BATCH, SEQ, lr=LR)
    for a, b in zip(ours, ref):
        assert abs(a - b) <= RTOL * abs(b), (ours, ref)


# --- checkpoints ---------------------------------------------------------------

def train_run(prog, ranks, weights, tokens, steps, log, *extra):
    res = run(["mpirun", "--oversubscribe", "--allow-run-as-root", "-np", str(ranks),
               tool("llm-run"), str(prog), "--weights", str(weights), "--data", str(tokens),
               "--steps", str(steps), "--lr", str(LR), "--weight-decay", str(WD),
               "--log-json", str(log), "--quiet", "--timeout", "60", *extra], timeout=300)
    assert res.returncode == 0, res.stderr
    return [json.loads(line)["loss"] for line in log.read_text().splitlines()]


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed")
def test_checkpoint_resume_and_reshard(gpt2_run, tmp_path):
    cfg, _, _, weights, tokens = gpt2_run
    a = compile_model(model_path("gpt2-tiny"), tmp_path / "a.llmir", plan="dp=2 tp=2",
                      train=True, batch=TRAIN_BATCH)
    b = compile_model(model_path("gpt2-tiny"), tmp_path / "b.llmir", plan="dp=1 tp=2",
                      train=True, batch=TRAIN_BATCH)
    straight = train_run(a, 4, weights, tokens, 10, tmp_path / "s.jsonl")
    ck = tmp_path / "ck"
    first = train_run(a, 4, weights, tokens, 10, tmp_path / "f.jsonl",
                      "--save-checkpoint", str(ck), "--save-every", "5")
    assert first == straight
    # The checkpoint holds step 10 now; make one at step 5 for the resume test.
    train_run(a, 4, weights, tokens, 5, tmp_path / "g.jsonl", "--save-checkpoint", str(ck))

    # Full global tensors with HF names, equal to PyTorch's after 5 AdamW steps.
    from llmir import safetensors as st
    saved = st.load_file(str(ck / "checkpoint.safetensors"))
    meta = st.read_metadata(str(ck / "checkpoint.safetensors"))
    assert meta["step"] == "5" and meta["format"] == "llmir-checkpoint-1"
    assert meta["plan"] == "dp=2 tp=2"
    _, ref_params = reference.train(cfg, reference.load_params(cfg, str(weights)),
                                    np.load(tokens), 5, TRAIN_BATCH, SEQ, lr=LR,
                                    weight_decay=WD)
    # Relative error in norm: Adam divides by sqrt(v), so single elements with
    # near-zero gradients amplify float rounding; whole tensors must agree.
    worst = 0.0
    for name, ref in ref_params.items():
        ours = saved[name]
        ref = ref.detach().numpy()
        assert ours.shape == ref.shape, name
        if name.endswith("attn.c_attn.bias"):
            # The key bias adds q.b_k to every score of a row, which softmax
            # ignores: its exact gradient is 0, so both runs step on rounding
            # noise (Adam scales noise to +-lr). Compare the q and v parts.
            h = cfg.hidden_size
            ours = np.concatenate([ours[:h], ours[2 * h:]])
            ref = np.concatenate([ref[:h], ref[2 * h:]])
        err = np.linalg.norm(ours - ref) / np.linalg.norm(ref)
        worst = max(worst, err)
        assert err <= 1e-4, (name, err)
    assert "h.0.attn.c_attn.weight.exp_avg" in saved and "wte.weight.exp_avg_sq" in saved
    print(f"checkpoint vs PyTorch after 5 steps: worst relative norm error {worst:.2e}")

    # Same layout: steps 6-10 bit-identical. Another layout: within tolerance.
    same = train_run(a, 4, weights, tokens, 10, tmp_path / "r1.jsonl", "--resume", str(ck))
    assert same == straight[5:]
    other = train_run(b, 2, weights, tokens, 10, tmp_path / "r2.jsonl", "--resume", str(ck))
    for x, y in zip(other, straight[5:]):
        assert abs(x - y) <= RTOL * abs(y)


def test_resume_rejects_non_checkpoints(gpt2_run, tmp_path):
    _, _, _, weights, tokens = gpt2_run
    prog = compile_model(model_path("gpt2-tiny"), tmp_path / "t.llmir", train=True)
    (tmp_path / "ck").mkdir()
    shutil.copy(weights, tmp_path / "ck" / "checkpoint.safetensors")
    assert_clean_error(run([tool("llm-run"), str(prog), "--weights", str(weights), "--data",
                            str(tokens), "--resume", str(tmp_path / "ck")]),
                       "is not an LLMIR checkpoint")
    assert_clean_error(run([tool("llm-run"), str(prog), "--weights", str(weights), "--data",
                            str(tokens), "--resume", str(tmp_path / "missing")]))


def test_non_finite_values_stop_the_run(gpt2_run, tmp_path):
    cfg, params, prog, _, tokens = gpt2_run
    bad = dict(params)
    w = bad["h.1.mlp.c_fc.weight"].copy()
    w[3, 5] = np.inf
    bad["h.1.mlp.c_fc.weight"] = w
    path = tmp_path / "inf.safetensors"
    safetensors.save_file(bad, str(path))
    # An Inf in the weights file is refused on load, naming the tensor and element.
    train = compile_model(model_path("gpt2-tiny"), tmp_path / "t.llmir", train=True)
    res = run([tool("llm-run"), str(train), "--weights", str(path), "--data", str(tokens)])
    assert_clean_error(res, "tensor 'h.1.mlp.c_fc.weight'", "(inf)", "index [3, 5]")
    # Finite weights that overflow in the first gemm reach the runtime checks.
    w = params["h.1.mlp.c_fc.weight"].copy()
    w[:, 5] = 3e38
    bad["h.1.mlp.c_fc.weight"] = w
    safetensors.save_file(bad, str(path))
    # Training: the gradient check names the parameter and the step.
    res = run([tool("llm-run"), str(train), "--weights", str(path), "--data", str(tokens)])
    assert_clean_error(res, "non-finite gradient of parameter", "step 0")
    # Evaluation with --check-numerics: the first op producing Inf/NaN is named (c_fc's GEMM, fused with its GELU).
    res = llm_run(prog, path, tokens, "--check-numerics")
    assert_clean_error(res, "op 'kernel 'gemm_bias_gelu''", "produced a non-finite value")


def test_killed_checkpoint_write_keeps_the_previous_checkpoint(gpt2_run, tmp_path):
    """A run killed while writing a checkpoint (fault injected after the first
    bytes reach the temporary file) leaves the previous checkpoint intact, and
    resuming from it reproduces the uninterrupted run."""
    _, _, _, weights, tokens = gpt2_run
    prog = compile_model(model_path("gpt2-tiny"), tmp_path / "t.llmir", train=True,
                         batch=TRAIN_BATCH)
    straight = train_run(prog, 1, weights, tokens, 6, tmp_path / "s.jsonl")
    ck = tmp_path / "ck"
    train_run(prog, 1, weights, tokens, 3, tmp_path / "a.jsonl", "--save-checkpoint", str(ck))
    before = (ck / "checkpoint.safetensors").read_bytes()
    res = run([tool("llm-run"), str(prog), "--weights", str(weights), "--data", str(tokens),
               "--steps", "6", "--lr", str(LR), "--weight-decay", str(WD), "--quiet",
               "--resume", str(ck), "--save-checkpoint", str(ck), "--save-every", "1"],
              env={**os.environ, "LLMIR_FAULT_INJECT": "kill-during-atomic-write"})
    assert res.returncode == 137, (res.returncode, res.stderr)
    assert (ck / "checkpoint.safetensors").read_bytes() == before
    resumed = train_run(prog, 1, weights, tokens, 6, tmp_path / "r.jsonl", "--resume", str(ck))
    assert resumed == straight[3:]


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed")
def test_bucketed_gradient_all_reduce(gpt2_run, tmp_path):
    """Small buckets (several all-reduces issued inside the backward pass)
    give the same training curve as the reference."""
    cfg, _, _, weights, tokens = gpt2_run
    prog = compile_model(model_path("gpt2-tiny"), tmp_path / "t.llmir", plan="dp=2",
                         train=True, batch=TRAIN_BATCH, train_options="=bucket-bytes=8192")
    ours = train_run(prog, 2, weights, tokens, 4, tmp_path / "b.jsonl")
    ref, _ = reference.train(cfg, reference.load_params(cfg, str(weights)), np.load(tokens),
                             4, TRAIN_BATCH, SEQ, lr=LR, weight_decay=WD)
    for a, b in zip(ours, ref):
        assert abs(a - b) <= RTOL * abs(b), (ours, ref)


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed")
@pytest.mark.parametrize("zero", [1, 3])
def test_zero_checkpoint_reshards(gpt2_run, tmp_path, zero):
    """ZeRO-1 optimizer state and ZeRO-3 parameters and state (dp chunks) are
    gathered into global tensors and resume in the same layout
    bit-identically and in a non-ZeRO layout."""
    _, _, _, weights, tokens = gpt2_run
    z = compile_model(model_path("gpt2-tiny"), tmp_path / "z.llmir", plan=f"dp=2 tp=2 zero={zero}",
                      train=True, batch=TRAIN_BATCH)
    t = compile_model(model_path("gpt2-tiny"), tmp_path / "t.llmir", plan="dp=1 tp=2",
                      train=True, batch=TRAIN_BATCH)
    straight = train_run(z, 4, weights, tokens, 6, tmp_path / "s.jsonl")
    ck = tmp_path / "ck"
    train_run(z, 4, weights, tokens, 3, tmp_path / "a.jsonl", "--save-checkpoint", str(ck))
    same = train_run(z, 4, weights, tokens, 6, tmp_path / "b.jsonl", "--resume", str(ck))
    assert same == straight[3:]
    other = train_run(t, 2, weights, tokens, 6, tmp_path / "c.jsonl", "--resume", str(ck))
    for x, y in zip(other, straight[3:]):
        assert abs(x - y) <= RTOL * abs(y)


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed")
def test_bf16_gradient_compression(gpt2_run, tmp_path):
    """grad-comm-dtype=bf16 halves the dp gradient bytes; with fp32
    accumulation the curve stays within bf16 rounding of the fp32 reference."""
    cfg, _, _, weights, tokens = gpt2_run
    prog = compile_model(model_path("gpt2-tiny"), tmp_path / "t.llmir", plan="dp=2",
                         train=True, batch=TRAIN_BATCH,
                         train_options="=grad-comm-dtype=bf16")
    ours = train_run(prog, 2, weights, tokens, 6, tmp_path / "b.jsonl")
    ref, _ = reference.train(cfg, reference.load_params(cfg, str(weights)), np.load(tokens),
                             6, TRAIN_BATCH, SEQ, lr=LR, weight_decay=WD)
    assert ours[0] == pytest.approx(ref[0], rel=RTOL)  # before any update
    for a, b in zip(ours, ref):
        assert abs(a - b) <= 1e-3 * abs(b), (ours, ref)
