"""f16 training with dynamic loss scaling (--llm-mixed-precision=compute=f16) on CPU ranks.

The oracle is reference.train(..., compute="f16"): the f16 cast points of the bf16 tests plus GradScaler's policy
(backward seeded with the scale S, gradients times 1/S, a step with a non-finite gradient skipped and S halved,
S doubled after `growth interval` good steps). Checked here:
- the 1-rank program follows it (losses rel 1e-2) and takes the same decisions (scale and skipped flag per step),
  with the default scale and with one so large that the first steps overflow;
- dp2, tp2, dp2·tp2, tp2·sp, dp2·zero1, pp2 (1F1B, interleaved) follow the 1-rank run (rel 1e-3, same decisions) at the default scale, and follow the
  policy from an overflowing one (all ranks decide on the same global gradient norm);
- a resumed run continues the scale and AdamW's step count exactly (bit-identical losses);
- the program seeds the backward with tfm.loss_scale and its updates are loss-scaled.
"""

import json
import shutil

import pytest

torch = pytest.importorskip("torch")

from test_e2e_cpu import LR, WD, run, tool  # noqa: E402
from test_mixed_precision import BATCH, LAYOUTS, SEQ, compile_program, tiny_model  # noqa: E402
from llmir import reference  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed")

STEPS = 12
# 2^24 overflows f16 in the first backward passes of these models; the growth interval of 2 makes the scale
# climb back (into overflow again), so a run sees skips, backoffs and growths.
OVERFLOW = {"init": 2.0 ** 24, "interval": 2}
DEFAULT = {"init": 65536.0, "interval": 2000}


@pytest.fixture(scope="module", params=["gpt2-tiny", "llama-tiny"])
def model(request, tmp_path_factory):
    m = tiny_model(request.param, tmp_path_factory.mktemp(request.param + "-f16"), 21)  # 4 layers: pp2 x vpp2
    m["refs"] = {}
    return m


def reference_run(m, scaling):
    key = (scaling["init"], scaling["interval"])
    if key not in m["refs"]:
        history = []
        losses, _ = reference.train(m["cfg"], m["params"], m["data"], STEPS, BATCH, SEQ, lr=LR, weight_decay=WD,
                                    compute="f16", history=history, loss_scale_init=scaling["init"],
                                    loss_scale_growth_interval=scaling["interval"])
        m["refs"][key] = [{"loss": l, "loss_scale": h["loss_scale"], "skipped": h["skipped"]}
                          for l, h in zip(losses, history)]
    return m["refs"][key]


def llm_run(m, prog, ranks, scaling, log, *extra):
    return run(["mpirun", "--oversubscribe", "--allow-run-as-root", "-np", str(ranks), tool("llm-run"), str(prog),
                "--weights", str(m["weights"]), "--data", str(m["tokens"]), "--lr", str(LR), "--weight-decay",
                str(WD), "--log-json", str(log), "--quiet", "--timeout", "60",
                "--loss-scale-init", repr(scaling["init"]), "--loss-scale-growth-interval", str(scaling["interval"]),
                *extra], timeout=600)


def train(m, plan, ranks, scaling):
    key = (plan, scaling["init"], scaling["interval"])
    if key not in m["runs"]:
        tag = f"f16-{plan}-{scaling['init']:g}".replace(" ", "_").replace("=", "")
        prog, log = m["dir"] / f"{tag}.llmir", m["dir"] / f"{tag}.jsonl"
        compile_program(m["cfg_path"], prog, plan, "f16")
        res = llm_run(m, prog, ranks, scaling, log, "--steps", str(STEPS))
        assert res.returncode == 0, res.stderr
        m["runs"][key] = [json.loads(line) for line in log.read_text().splitlines()]
    return m["runs"][key]


def assert_follows(ours, ref, rtol, what):
    assert len(ours) == len(ref) == STEPS, what
    decisions = [(r["loss_scale"], r["skipped"]) for r in ours]
    assert decisions == [(r["loss_scale"], r["skipped"]) for r in ref], (what, decisions)
    worst = max(abs(a["loss"] - b["loss"]) / abs(b["loss"]) for a, b in zip(ours, ref))
    print(f"{what}: max rel loss diff {worst:.2e} (tol {rtol:g}); decisions {decisions}")
    for step, (a, b) in enumerate(zip(ours, ref)):
        assert abs(a["loss"] - b["loss"]) <= rtol * abs(b["loss"]), (what, step, a, b)


@pytest.mark.parametrize("scaling", [DEFAULT, OVERFLOW], ids=["default", "overflow"])
def test_single_rank_follows_the_reference(model, scaling):
    ours = train(model, "", 1, scaling)
    assert_follows(ours, reference_run(model, scaling), 1e-2, f"1 rank f16 {scaling}")
    assert ours[-1]["loss"] < 0.9 * ours[0]["loss"], "does not train"
    if scaling is OVERFLOW:  # the case exercises every branch of the policy
        assert_policy(ours, scaling)
        scales = [r["loss_scale"] for r in ours]
        assert any(b > a for a, b in zip(scales, scales[1:])), ("never grew", scales)
        # A skipped step leaves the norm unknown (null in the JSON log).
        assert all(r["grad_norm"] is None for r in ours if r["skipped"])


def assert_policy(ours, scaling):
    """The decisions follow GradScaler's rule from the initial scale."""
    scale, good = scaling["init"], 0
    for step, r in enumerate(ours):
        assert r["loss_scale"] == scale, (step, ours)
        if r["skipped"]:
            scale, good = scale / 2, 0
        else:
            good += 1
            if good == scaling["interval"]:
                scale, good = scale * 2, 0
    assert any(r["skipped"] for r in ours) and not all(r["skipped"] for r in ours)


@pytest.mark.parametrize("plan,ranks", LAYOUTS)
def test_layouts_follow_the_single_rank_run(model, plan, ranks):
    assert_follows(train(model, plan, ranks, DEFAULT), train(model, "", 1, DEFAULT), 1e-3, plan)
    # Scales near overflow: where a layout's f16 partial results overflow differs (a dp rank's weight-gradient GEMM
    # sums half the tokens, a micro-batch a quarter), as with PyTorch DDP + GradScaler, so only the policy is
    # checked; all ranks read the same global norm, so they skip together (a rank that did not would deadlock the
    # pipeline or diverge from the default-scale losses above).
    assert_policy(train(model, plan, ranks, OVERFLOW), OVERFLOW)


def test_resume_continues_the_scale(model, tmp_path):
    prog = tmp_path / "p.llmir"
    compile_program(model["cfg_path"], prog, "", "f16")
    straight = train(model, "", 1, OVERFLOW)
    ck = tmp_path / "ck"
    first = llm_run(model, prog, 1, OVERFLOW, tmp_path / "a.jsonl", "--steps", "7", "--save-checkpoint", str(ck))
    assert first.returncode == 0, first.stderr
    # The resumed run is given another initial scale: the checkpoint's state must win.
    other = {"init": 1.0, "interval": OVERFLOW["interval"]}
    second = llm_run(model, prog, 1, other, tmp_path / "b.jsonl", "--steps", str(STEPS), "--resume", str(ck))
    assert second.returncode == 0, second.stderr
    resumed = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert [(r["loss"], r["loss_scale"], r["skipped"]) for r in resumed] == \
        [(r["loss"], r["loss_scale"], r["skipped"]) for r in straight[7:]]


def test_program_seeds_the_backward_with_the_loss_scale(model, tmp_path):
    imp = run([tool("llm-translate"), "--import-hf-config", str(model["cfg_path"]), "--batch", str(BATCH),
               "--seq", str(SEQ)])
    step = run([tool("llm-opt"), "--llm-mixed-precision=compute=f16", "--tfm-build-train-step"], input=imp.stdout)
    assert step.returncode == 0, step.stderr
    assert "tfm.loss_scale {llmir.backward} : tensor<f32>" in step.stdout
    updates = [line for line in step.stdout.splitlines() if "tfm.adamw_update" in line]
    assert updates and all("loss_scaled" in u and "norm_sq" in u for u in updates)
    ir = compile_program(model["cfg_path"], tmp_path / "p.llmir", "", "f16")
    assert 'exec.kernel "loss_scale"' in ir and "xf16" in ir


@pytest.mark.parametrize("value", ["0", "-4", "inf", "1e40", "x"])
def test_bad_loss_scale_is_refused(model, tmp_path, value):
    prog = tmp_path / "p.llmir"
    compile_program(model["cfg_path"], prog, "", "f16")
    res = run([tool("llm-run"), str(prog), "--weights", str(model["weights"]), "--data", str(model["tokens"]),
               "--loss-scale-init", value])
    assert res.returncode != 0
    assert "--loss-scale-init" in res.stderr and len(res.stderr) < 400, res.stderr
