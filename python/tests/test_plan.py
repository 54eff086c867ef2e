"""llmir.Plan pipeline fields: validation, the llm-opt command lines the driver
builds (without needing --llm-pipeline-split to exist) and the simulated
schedule of a plan (Plan.simulate / Program.simulate / schedule_svg)."""

import os
import shutil
import subprocess

import numpy as np
import pytest

import llmir
from llmir import driver
from conftest import MODELS as REPO_MODELS


# --- validation ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,message", [
    (dict(pp=0), "pp must be an integer >= 1, got 0"),
    (dict(dp=0), "dp must be an integer >= 1"),
    (dict(microbatches=-1), "microbatches must be an integer >= 1"),
    (dict(pp=2, vpp=0), "vpp must be an integer >= 1"),
    (dict(pp=2, schedule="1f1f"), "unknown schedule '1f1f' \\(expected gpipe, 1f1b, interleaved, zb-h1, zb-h2, zb-v, v-half, v-min, dualpipev\\)"),
    (dict(pp=2, schedule="interleaved"), "'interleaved' needs vpp >= 2"),
    (dict(pp=2, vpp=2), "vpp=2 needs schedule='interleaved'"),
    (dict(pp=1, vpp=2, schedule="interleaved"), "vpp=2 needs pp >= 2"),
    (dict(pp=2, layout="E,t*2,L"), "has 1 stages, expected pp \\* vpp = 2"),
    (dict(pp=2, layout="E,t*2|x,L"), "stage 1: bad item 'x'"),
    (dict(pp=2, layout="E,t*x|t,L"), "bad item 't\\*x'"),
    (dict(pp=2, layout="t|E,t,L"), "stage 1: E \\(the embedding\\) must come first in stage 0"),
    (dict(pp=2, layout="t,E|t,L"), "stage 0: E \\(the embedding\\) must come first"),
    (dict(pp=2, layout="E,L|t"), "stage 0: L \\(the head\\) must come last in the last stage"),
    (dict(pp=2, layout="E,t|t"), "the last stage must end with L"),
    (dict(pp=2, layout="t|t,L"), "stage 0 must start with E"),
    (dict(pp=3, layout="E,t|t*0|t,L"), "stage 1 is empty"),
    (dict(pp=2, schedule_actions=[["F0s0", "B0s0"]]), "1 rank\\(s\\), expected pp=2"),
    (dict(pp=2, schedule_actions=[["F0s0", "B0"], ["F0s1", "B0s1"]]), "rank 0: bad action 'B0'"),
    (dict(pp=2, schedule_actions="rank 1: F0s0\nrank 0: F0s1"), "line 1: expected 'rank 0: ...'"),
    (dict(cp=0), "cp must be an integer >= 1, got 0"),
    (dict(cp=2, tp=2, sp=True), "cp=2 with sp=True: both split the sequence"),
])
def test_bad_plans_are_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        llmir.Plan(**kwargs)


def test_ranks_and_layout():
    plan = llmir.Plan(dp=2, tp=2, pp=2, microbatches=4, layout=" E, t*2 | t*2, L ")
    assert plan.ranks == 8 and plan.pipelined
    assert plan.layout == "E,t*2|t*2,L"
    assert plan.layout_stages() == [[("E", 1), ("t", 2)], [("t", 2), ("L", 1)]]
    assert plan.layout_layers() == 4
    assert not llmir.Plan(dp=2).pipelined and llmir.Plan(microbatches=2).pipelined
    interleaved = llmir.Plan(pp=2, vpp=2, schedule="interleaved", microbatches=4, layout="E,t|t|t|t,L")
    assert interleaved.ranks == 2 and interleaved.layout_layers() == 4
    assert llmir.Plan(pp=3, layout="E,t*0|t*2,|t,L").layout_layers() == 3  # as the compiler reads it


def test_check_against_batch_and_model():
    plan = llmir.Plan(dp=2, pp=2, microbatches=3)
    plan.check(batch=12)
    with pytest.raises(llmir.CompileError, match="microbatches=3 does not divide the 4 batch rows of each "
                                                 "data-parallel rank \\(batch 8 / dp=2\\)"):
        plan.check(batch=8)
    with pytest.raises(llmir.CompileError, match="places 4 layers, the model has 2"):
        llmir.Plan(pp=2, layout="E,t*2|t*2,L").check(batch=4, num_layers=2)


# --- command lines -------------------------------------------------------------------------------

def test_plain_plans_keep_their_command_line(tmp_path):
    """No pipeline options reach --llm-partition unless the plan is pipelined."""
    assert llmir.Plan(dp=2, tp=2).passes(train=True, workdir=str(tmp_path)) == [
        "--llm-partition=dp=2 tp=2 sp=false zero=0 recompute=none",
        "--tfm-build-train-step", "--llm-lower-to-exec"]
    assert llmir.Plan().passes(workdir=str(tmp_path)) == [
        "--llm-partition=dp=1 tp=1 sp=false zero=0 recompute=none", "--llm-lower-to-exec"]


def test_pipelined_command_line(tmp_path):
    plan = llmir.Plan(dp=2, pp=2, vpp=2, microbatches=4, schedule="interleaved", layout="E,t|t|t|t,L")
    assert plan.passes(train=True, workdir=str(tmp_path)) == [
        "--llm-partition=dp=2 tp=1 sp=false zero=0 recompute=none pp=2 vpp=2 microbatches=4 "
        "schedule=interleaved layout=E,t|t|t|t,L",
        "--tfm-build-train-step", "--llm-pipeline-split", "--llm-lower-to-exec"]
    # Gradient accumulation alone (pp=1, several micro-batches) is a pipeline too.
    assert llmir.Plan(microbatches=2).passes(train=False, workdir=str(tmp_path)) == [
        "--llm-partition=dp=1 tp=1 sp=false zero=0 recompute=none pp=1 vpp=1 microbatches=2 schedule=1f1b",
        "--llm-pipeline-split", "--llm-lower-to-exec"]


def test_zero3_without_resharding_command_line(tmp_path):
    plan = llmir.Plan(dp=2, zero=3, reshard_after_forward=False)
    assert plan.passes(train=True, workdir=str(tmp_path))[0] == \
        "--llm-partition=dp=2 tp=1 sp=false zero=3 recompute=none reshard-after-forward=false"
    assert llmir.plan_from_layout("dp=2 tp=1 pp=1 vpp=1 microbatches=1 schedule=1f1b recompute=none sp=false "
                                  "zero=3 reshard-after-forward=false") == plan
    with pytest.raises(ValueError, match="reshard_after_forward=False needs zero=3, got zero=2"):
        llmir.Plan(dp=2, zero=2, reshard_after_forward=False)


@pytest.mark.parametrize("form", ["lists", "text"])
def test_schedule_actions_go_to_a_schedule_file(tmp_path, form):
    lists = [["F0s0", "F1s0", "B0s0", "B1s0"], ["F0s1", "B0s1", "F1s1", "B1s1"]]
    text = "# my schedule\nrank 0: F0s0 F1s0 B0s0 B1s0\n\nrank 1: F0s1 B0s1 F1s1 B1s1\n"
    plan = llmir.Plan(pp=2, microbatches=2, schedule_actions=lists if form == "lists" else text)
    assert plan.schedule_actions == lists
    passes = plan.passes(train=True, workdir=str(tmp_path))
    path = tmp_path / "schedule.txt"
    assert passes[2] == f"--llm-pipeline-split=schedule-file={path}"
    assert passes[0].endswith("pp=2 vpp=1 microbatches=2 schedule=1f1b")
    assert path.read_text() == "rank 0: F0s0 F1s0 B0s0 B1s0\nrank 1: F0s1 B0s1 F1s1 B1s1\n"


def test_compile_runs_the_pipelined_command(tmp_path, monkeypatch):
    """llmir.compile hands plan.passes() to llm-opt (tools stubbed: the pipeline
    passes need not exist for the driver's side to be checked)."""
    from test_builder import gpt2_block_model

    calls = []

    def fake(args, stdin=None):
        calls.append(args)
        return subprocess.CompletedProcess(args, 0, b"", b"")

    monkeypatch.setattr(driver, "_run_tool", fake)
    monkeypatch.setattr(driver, "tool_path", lambda name: name)
    plan = llmir.Plan(dp=2, pp=2, microbatches=2, layout="E,t|t,L")
    prog = llmir.compile(gpt2_block_model(), plan, train=True, workdir=str(tmp_path))
    assert calls[0] == ["llm-opt", str(tmp_path / "model.mlir"), *plan.passes(True, str(tmp_path)),
                        "-o", str(tmp_path / "model.exec.mlir")]
    assert calls[1][:2] == ["llm-translate", "--export-program"]
    assert prog.plan.ranks == 4
    with pytest.raises(llmir.CompileError, match="microbatches=3"):
        llmir.compile(gpt2_block_model(), llmir.Plan(pp=2, microbatches=3), workdir=str(tmp_path))
    with pytest.raises(llmir.CompileError, match="places 3 layers, the model has 2"):
        llmir.compile(gpt2_block_model(), llmir.Plan(pp=2, layout="E,t*2|t,L"), workdir=str(tmp_path))


# --- simulation ----------------------------------------------------------------------------------

def have_opt():
    try:
        llmir.tool_path("llm-opt")
        return True
    except FileNotFoundError:
        if os.environ.get("LLMIR_REQUIRE_TOOLS") == "1":
            raise
        return False


needs_opt = pytest.mark.skipif(not have_opt(), reason="LLMIR tools not built")


@needs_opt
def test_even_plan_simulates_like_simulate_schedule():
    # Whole-model costs tf=4, tb=8 over pp=4 even ranks = 1 and 2 per rank.
    sim = llmir.Plan(pp=4, microbatches=8).simulate(tf=4.0, tb=8.0)
    ref = llmir.simulate_schedule(pp=4, microbatches=8, schedule="1f1b")
    assert sim["step_time"] == sim["makespan"] == ref["makespan"] == 33.0
    assert sim["bubble"] == ref["bubble"] and sim["peak_in_flight"] == [4, 3, 2, 1]
    assert sim["rank_loads"] == [0.25] * 4


@needs_opt
def test_layouts_change_the_simulated_step():
    model = llmir.GPT2()  # 124M: the LM head weighs ~4.5 layers at seq 1024
    even = llmir.Plan(pp=4, microbatches=8, layout="E,t*3|t*3|t*3|t*3,L").simulate(model)
    moved = llmir.Plan(pp=4, microbatches=8, layout="E,t*5|t*4|t*3|L").simulate(model)
    assert sum(even["rank_loads"]) == pytest.approx(1.0)
    assert even["rank_loads"][3] == pytest.approx(max(even["rank_loads"]))
    assert moved["step_time"] < even["step_time"] and moved["bubble"] < even["bubble"]
    with pytest.raises(ValueError, match="need the model"):
        llmir.Plan(pp=2, layout="E,t|t,L").simulate()


@needs_opt
def test_program_simulate_and_svg(tmp_path):
    from test_builder import gpt2_block_model

    model = gpt2_block_model()
    plan = llmir.Plan(pp=2, microbatches=2, layout="E,t|t,L",
                      schedule_actions=[["F0s0", "F1s0", "B0s0", "B1s0"], ["F0s1", "B0s1", "F1s1", "B1s1"]])
    # A Program as compile() returns it (the pipeline split is not needed to simulate).
    prog = llmir.Program("m.llmir", "m.exec.mlir", plan, dict(model.attrs), model.batch, model.seq, True,
                         str(tmp_path), model)
    sim = prog.simulate()
    assert sim["schedule"] == "file" and sim["ranks"] == plan.schedule_actions
    assert len(sim["peak_in_flight"]) == 2 and 0 < sim["bubble"] < 1
    svg = prog.schedule_svg(str(tmp_path / "s.svg"))
    assert open(svg).read().count("<rect") >= 8


@needs_opt
def test_compare_layouts_example(tmp_path):
    """examples/python/compare_layouts.py: the head-aware layout of GPT-2 124M beats the even split."""
    import sys

    from conftest import REPO

    script = os.path.join(REPO, "examples", "python", "compare_layouts.py")
    svg = tmp_path / "best.svg"
    res = subprocess.run([sys.executable, script, "--svg", str(svg)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "best: E,t*5|t*4|t*3|L (1.43x faster than E,t*3|t*3|t*3|t*3,L)" in res.stdout
    assert "interleaved/vpp=2" in res.stdout and svg.read_text().startswith("<svg")
    bad = subprocess.run([sys.executable, script, "--pp", "2", "--layout", "E,t*6|t*5,L"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "places 11 layers, the model has 12" in bad.stderr


def have_pipeline_split():
    if not have_opt():
        return False
    res = subprocess.run([llmir.tool_path("llm-opt"), "--help"], capture_output=True, text=True)
    return "--llm-pipeline-split" in res.stdout


@pytest.mark.skipif(not have_pipeline_split(), reason="llm-opt has no --llm-pipeline-split yet")
@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed")
def test_builder_model_trains_through_a_user_schedule(tmp_path):
    """Driver end to end: a Builder model, a layout and a hand-written schedule
    on 2 pipeline ranks train to the PyTorch loss curve."""
    pytest.importorskip("torch")
    from llmir import reference as R
    from test_builder import B, S, gpt2_block_model, gpt2_config, write_inputs

    cfg = gpt2_config()
    weights = llmir.random_weights(cfg, seed=5)
    wpath, tpath, tokens = write_inputs(tmp_path, weights, cfg.vocab_size)
    plan = llmir.Plan(pp=2, microbatches=2, layout="E,t|t,L",
                      schedule_actions="rank 0: F0s0 F1s0 B0s0 B1s0\nrank 1: F0s1 B0s1 F1s1 B1s1\n")
    prog = llmir.compile(gpt2_block_model(), plan, train=True, workdir=str(tmp_path / "p"))
    losses = [s["loss"] for s in prog.run(wpath, tpath, steps=2, lr=1e-3)]
    ref, _ = R.train(cfg, weights, tokens, 2, B, S, lr=1e-3)
    np.testing.assert_allclose(losses, ref, rtol=1e-5)


@pytest.mark.skipif(not have_opt(), reason="llm-opt not built")
def test_auto_plan_picks_a_layout_that_trains(tmp_path):
    """llmir.auto_plan asks the compiler's planner; its layout compiles and
    trains to the PyTorch loss curve on the CPU ranks it planned for."""
    cfg = llmir.load_config(os.path.join(REPO_MODELS, "gpt2-tiny.json"))
    plan, report = llmir.auto_plan(cfg, "cpu,ranks=4", batch=8, seq=16, details=True)
    assert plan.ranks == 4 and report["evaluated"] >= len(report["top"]) >= 1
    assert llmir.plan_from_layout(report["top"][0]["layout"]) == plan
    assert "faster than the runner-up" in report["reason"] or len(report["top"]) == 1
    with pytest.raises(llmir.CompileError, match="does not fit.*needs >="):
        llmir.auto_plan(os.path.join(REPO_MODELS, "gpt3-175b.json"), "cpu,ranks=2", batch=8, seq=2048)
    if shutil.which("mpirun") is None:
        return
    pytest.importorskip("torch")
    from llmir import reference as R

    weights = llmir.random_weights(cfg, seed=2)
    wpath, tpath = tmp_path / "w.safetensors", tmp_path / "t.npy"
    from llmir import safetensors as st
    st.save_file(weights, str(wpath))
    tokens = llmir.random_tokens(cfg.vocab_size, 2000, seed=3)
    np.save(tpath, tokens)
    prog = llmir.compile(cfg, plan, batch=8, seq=16, train=True, workdir=str(tmp_path / "p"))
    losses = [s["loss"] for s in prog.run(str(wpath), str(tpath), steps=2, lr=1e-3)]
    ref, _ = R.train(cfg, weights, tokens, 2, 8, 16, lr=1e-3)
    np.testing.assert_allclose(losses, ref, rtol=1e-5)


def test_schedule_list_matches_the_compiler():
    """driver.SCHEDULES is the compiler's list (ScheduleKinds.h), as llm-opt reports it."""
    import re
    import subprocess

    from llmir.driver import SCHEDULES, tool_path

    res = subprocess.run([tool_path("llm-opt"), "--llm-pipeline-schedule=schedule=none", "-o", "/dev/null"],
                         input="module {}\n", capture_output=True, text=True)
    listed = re.search(r"unknown schedule 'none' \(expected ([^)]*)\)", res.stderr)
    assert listed, res.stderr
    assert tuple(listed.group(1).split(", ")) == SCHEDULES


# --- context parallelism -------------------------------------------------------------------------

def test_cp_plan_fields(tmp_path):
    plan = llmir.Plan(dp=2, cp=4, tp=2)
    assert plan.ranks == 16
    assert plan.option() == "dp=2 cp=4 tp=2 sp=false zero=0 recompute=none"
    assert llmir.Plan(cp=1).option() == llmir.Plan().option()  # cp=1 is the default, unsaid


@needs_opt
@pytest.mark.parametrize("plan", [dict(cp=2), dict(dp=2, cp=2, tp=2), dict(cp=4, recompute="full")])
def test_cp_plan_round_trips_through_the_compiler(plan):
    """Plan -> --llm-partition -> the module's llmir.plan -> the cost model's
    layout string (--llm-memory-report) -> plan_from_layout: the same Plan."""
    plan = llmir.Plan(**plan)
    model = subprocess.run([llmir.tool_path("llm-translate"), "--import-hf-config",
                            os.path.join(REPO_MODELS, "llama-tiny.json"), "--batch", "4", "--seq", "64"],
                           capture_output=True, text=True, check=True).stdout
    res = subprocess.run([llmir.tool_path("llm-opt"), f"--llm-partition={plan.option()}",
                          "--llm-memory-report=json", "-o", os.devnull],
                         input=model, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    layout = __import__("json").loads(res.stdout)["layout"]
    assert f"cp={plan.cp} " in layout
    assert llmir.plan_from_layout(layout) == plan


@needs_opt
def test_auto_plan_returns_a_cp_plan():
    """One long sequence of a 2-head, 2-layer model on 4 CPU ranks: the
    planner splits the sequence over cp and says why; its layout string is
    the Plan it returns."""
    cfg = {"model_type": "gpt2", "n_embd": 128, "n_head": 2, "n_layer": 2, "n_positions": 1024,
           "vocab_size": 1024}
    plan, report = llmir.auto_plan(cfg, "cpu,ranks=4", batch=1, seq=1024, details=True)
    assert plan.cp > 1 and plan.ranks == 4, report["top"][0]["layout"]
    assert llmir.plan_from_layout(report["top"][0]["layout"]) == plan
    assert f"cp={plan.cp} splits each sequence: {1024 // plan.cp} of 1024 tokens per rank" in report["reason"]

