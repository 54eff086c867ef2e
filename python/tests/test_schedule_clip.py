"""LR schedules (llm-run --lr-schedule/--warmup-steps/--min-lr/--max-steps) and
gradient clipping (--clip-grad-norm, the global norm the compiled step
computes) against the PyTorch reference: LambdaLR + clip_grad_norm_ + AdamW.
"""

import json
import shutil

import numpy as np
import pytest

from conftest import model_path

torch = pytest.importorskip("torch")

from test_e2e_cpu import RTOL, SEQ, WD, compile_model, run, tool  # noqa: E402
from llmir import config, reference, safetensors  # noqa: E402
from llmir.weights import random_tokens, random_weights, save_tokens  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed")

BATCH, STEPS, LR = 4, 8, 1e-3
# Small enough that every step clips (the tiny models' norms are ~1-10).
CLIP = 0.05
SCHEDULE = ["--lr-schedule", "cosine", "--warmup-steps", "3", "--min-lr", "1e-4",
            "--max-steps", "7"]
NORM = "=grad-norm=true"  # the step computes the global gradient norm
SCHEDULE_KW = dict(lr_schedule="cosine", warmup_steps=3, min_lr=1e-4, max_steps=7)


@pytest.fixture(scope="module", params=["gpt2-tiny", "llama-tiny"])
def setup(request, tmp_path_factory):
    name = request.param
    d = tmp_path_factory.mktemp(name)
    raw = json.load(open(model_path(name)))
    raw["n_layer" if "n_layer" in raw else "num_hidden_layers"] = 4  # pp=2: 2 layers a stage
    cfg_path = d / "config.json"
    cfg_path.write_text(json.dumps(raw))
    cfg = config.load_config(str(cfg_path))
    weights, tokens = d / "w.safetensors", d / "t.npy"
    safetensors.save_file(random_weights(cfg, seed=11), str(weights))
    save_tokens(random_tokens(cfg.vocab_size, 2000, seed=12), str(tokens))
    return cfg_path, cfg, weights, tokens


def llm_train(prog, ranks, weights, tokens, log, steps, *extra):
    res = run(["mpirun", "--oversubscribe", "--allow-run-as-root", "-np", str(ranks),
               tool("llm-run"), str(prog), "--weights", str(weights), "--data", str(tokens),
               "--steps", str(steps), "--lr", str(LR), "--weight-decay", str(WD),
               "--log-json", str(log), "--timeout", "60", *extra], timeout=300)
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in log.read_text().splitlines()], res.stderr


def compile_pipelined(cfg_path, out, plan):
    return compile_model(cfg_path, out, plan=plan, train=True, batch=BATCH,
                         train_options="=grad-norm=true", split=True)


def reference_run(cfg, weights, tokens, steps, **kw):
    history = []
    losses, params = reference.train(cfg, reference.load_params(cfg, str(weights)),
                                     np.load(tokens), steps, BATCH, SEQ, lr=LR,
                                     weight_decay=WD, history=history, **kw)
    return losses, history, params


def check(log, losses, history, what):
    assert len(log) == len(losses), what
    for step, (ours, loss, h) in enumerate(zip(log, losses, history)):
        assert ours["step"] == step, what
        assert abs(ours["loss"] - loss) <= RTOL * abs(loss), (what, step, ours["loss"], loss)
        assert abs(ours["lr"] - h["lr"]) <= RTOL * abs(h["lr"]), (what, step, ours["lr"], h["lr"])
        assert abs(ours["grad_norm"] - h["grad_norm"]) <= RTOL * h["grad_norm"], \
            (what, step, ours["grad_norm"], h["grad_norm"])


def test_lr_at_matches_lambda_lr_definition():
    lrs = [reference.lr_at(s, 1.0, "cosine", 2, 0.1, 6) for s in range(8)]
    assert lrs[:2] == [0.5, 1.0]
    assert lrs[2] == pytest.approx(1.0) and lrs[4] == pytest.approx(0.55)
    assert lrs[6:] == [0.1, 0.1]
    lin = [reference.lr_at(s, 1.0, "linear", 0, 0.0, 4) for s in range(5)]
    assert lin == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])
    assert [reference.lr_at(s, 2.0, "constant", 2) for s in range(3)] == [1.0, 2.0, 2.0]


@pytest.mark.parametrize("plan,ranks", [(None, 1), ("dp=2", 2)])
def test_lr_schedule_matches_reference(setup, tmp_path, plan, ranks):
    cfg_path, cfg, weights, tokens = setup
    prog = compile_model(str(cfg_path), tmp_path / "t.llmir", plan=plan, train=True,
                         batch=BATCH, train_options=NORM)
    log, stderr = llm_train(prog, ranks, weights, tokens, tmp_path / "log.jsonl", STEPS,
                            *SCHEDULE)
    losses, history, _ = reference_run(cfg, weights, tokens, STEPS, **SCHEDULE_KW)
    check(log, losses, history, plan)
    assert "| lr " in stderr and "| grad norm " in stderr
    # Linear warm-up, the peak, then down to min-lr at max-steps and after.
    assert log[0]["lr"] == pytest.approx(LR / 3) and log[2]["lr"] == pytest.approx(LR)
    assert log[7]["lr"] == pytest.approx(1e-4)


def test_schedule_continues_after_resume(setup, tmp_path):
    cfg_path, cfg, weights, tokens = setup
    prog = compile_model(str(cfg_path), tmp_path / "t.llmir", plan="dp=2", train=True,
                         batch=BATCH, train_options=NORM)
    straight, _ = llm_train(prog, 2, weights, tokens, tmp_path / "s.jsonl", STEPS,
                            *SCHEDULE, "--clip-grad-norm", str(CLIP))
    ck = tmp_path / "ck"
    llm_train(prog, 2, weights, tokens, tmp_path / "a.jsonl", 4, *SCHEDULE,
              "--clip-grad-norm", str(CLIP), "--save-checkpoint", str(ck))
    resumed, _ = llm_train(prog, 2, weights, tokens, tmp_path / "b.jsonl", STEPS, *SCHEDULE,
                           "--clip-grad-norm", str(CLIP), "--resume", str(ck))
    assert [r["step"] for r in resumed] == list(range(4, STEPS))
    for a, b in zip(resumed, straight[4:]):
        assert a["lr"] == b["lr"] and a["loss"] == b["loss"] and a["grad_norm"] == b["grad_norm"]


@pytest.mark.parametrize("plan,ranks", [
    (None, 1), ("dp=2 tp=2", 4), ("pp=2 dp=2", 4), ("dp=2 zero=1", 2),
    ("dp=2 tp=2 sp=true zero=1", 4)])
def test_clip_grad_norm_matches_reference(setup, tmp_path, plan, ranks):
    cfg_path, cfg, weights, tokens = setup
    if plan and "pp=" in plan:
        prog = compile_pipelined(cfg_path, tmp_path / "t.llmir", plan)
    else:
        prog = compile_model(str(cfg_path), tmp_path / "t.llmir", plan=plan, train=True,
                             batch=BATCH, train_options=NORM)
    log, _ = llm_train(prog, ranks, weights, tokens, tmp_path / "log.jsonl", STEPS,
                       "--clip-grad-norm", str(CLIP), *SCHEDULE)
    losses, history, _ = reference_run(cfg, weights, tokens, STEPS, grad_clip=CLIP,
                                       **SCHEDULE_KW)
    assert all(h["grad_norm"] > CLIP for h in history)  # clipping is active
    check(log, losses, history, plan)


def test_no_clipping_without_the_flag(setup, tmp_path):
    """The norm is reported, the update is the unclipped one; a program
    without the norm has the same losses and no grad_norm, and rejects
    --clip-grad-norm."""
    cfg_path, cfg, weights, tokens = setup
    prog = compile_model(str(cfg_path), tmp_path / "t.llmir", train=True, batch=BATCH,
                         train_options=NORM)
    log, _ = llm_train(prog, 1, weights, tokens, tmp_path / "log.jsonl", 4)
    losses, history, _ = reference_run(cfg, weights, tokens, 4)
    check(log, losses, history, "unclipped")
    plain = compile_model(str(cfg_path), tmp_path / "p.llmir", train=True, batch=BATCH)
    log2, _ = llm_train(plain, 1, weights, tokens, tmp_path / "log2.jsonl", 4)
    assert [r["loss"] for r in log2] == [r["loss"] for r in log]
    assert "grad_norm" not in log2[0] and log2[0]["lr"] == LR
    res = run([tool("llm-run"), str(plain), "--weights", str(weights), "--data", str(tokens),
               "--clip-grad-norm", "1"])
    assert res.returncode != 0 and "does not compute the gradient norm" in res.stderr


def test_bad_schedule_options(setup, tmp_path):
    cfg_path, _, weights, tokens = setup
    prog = compile_model(str(cfg_path), tmp_path / "t.llmir", train=True, batch=BATCH)
    for extra, needle in [
            (["--lr-schedule", "exp"], "expected constant, cosine or linear"),
            (["--lr-schedule", "cosine", "--warmup-steps", "5", "--max-steps", "5"],
             "must be greater than --warmup-steps"),
            (["--min-lr", "1"], "--min-lr must not exceed --lr"),
            (["--clip-grad-norm", "0"], "expected a positive number")]:
        res = run([tool("llm-run"), str(prog), "--weights", str(weights), "--data",
                   str(tokens), "--steps", "2", *extra])
        assert res.returncode != 0 and "error:" in res.stderr and needle in res.stderr, \
            (extra, res.stderr)
