"""The CUDA-graph step planner (runtime/src/program/StepGraph.cpp) on real
compiled programs, through `llm-run --graph-plan` (pure: no backend, no GPU):
which steps a CUDA graph can hold whole, which host synchronisations move
before or after the replay, and why a step stays eager.
"""

import re

import pytest

from conftest import model_path
from test_e2e_cpu import compile_model, run, tool
from test_generate import compile_inference


def graph_plan(prog, *extra):
    res = run([tool("llm-run"), str(prog), "--graph-plan", *extra])
    assert res.returncode == 0, res.stderr
    return res.stdout


def summary(text, entry):
    m = re.search(rf"^stage 0 {entry}: (.*)$", text, re.M)
    assert m, text
    return m.group(1)


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    d = tmp_path_factory.mktemp("step_graph")
    gpt2 = model_path("gpt2-tiny")
    return {
        "train": compile_model(gpt2, d / "train.llmir", train=True),
        "train_dp2": compile_model(gpt2, d / "dp2.llmir", plan="dp=2", train=True),
        "gen": compile_inference(gpt2, d / "gen.llmir"),
        "gen_llama": compile_inference(model_path("llama-tiny"), d / "gen_llama.llmir"),
    }


def test_train_step_is_one_graph_with_its_host_reads_moved_out(programs):
    text = graph_plan(programs["train"])
    assert summary(text, "step").startswith("one graph of "), text
    # AdamW's per-step scalars become step inputs, its non-finite check a read-back.
    assert re.search(r"^  before at \d+ \(kernel 'adamw(_multi)?'\): learning rate", text, re.M)
    assert re.search(r"^  after at \d+ \(kernel 'adamw(_multi)?'\): non-finite", text, re.M)
    assert re.search(r"^  after at \d+ \(kernel 'embedding'\): token id", text, re.M)
    assert "splits" not in text


def test_staged_communicator_keeps_the_step_eager_and_says_why(programs):
    nccl = graph_plan(programs["train_dp2"], "--comm", "nccl")
    assert summary(nccl, "step").startswith("one graph of "), nccl
    staged = graph_plan(programs["train_dp2"], "--comm", "mpi")
    reason = summary(staged, "step")
    assert re.match(r"eager: instruction \d+ \(all_reduce\): all_reduce on the staged "
                    r"\(--comm mpi\) communicator", reason), reason
    # Every collective is a host point: the step falls apart at each one.
    assert staged.count("  splits at ") >= 1


def test_decode_is_one_graph_unless_rope_reads_host_positions(programs):
    gpt2 = graph_plan(programs["gen"])
    assert summary(gpt2, "decode").startswith("one graph of "), gpt2
    assert re.search(r"^  before at \d+ \(kernel 'cache_attention'\): cache positions", gpt2,
                     re.M)
    llama = summary(graph_plan(programs["gen_llama"]), "decode")
    assert re.match(r"eager: instruction \d+ \(kernel 'rope_at'\)", llama), llama


def test_host_timing_options_keep_steps_eager(programs):
    assert summary(graph_plan(programs["train"], "--check-numerics"), "step") == \
        "eager: --check-numerics reads every output back after its kernel"
    assert summary(graph_plan(programs["train"], "--trace", "t.json"), "step") == \
        "eager: --trace times each instruction on the host"


def test_graph_plan_of_a_missing_program_is_a_clean_error(tmp_path):
    res = run([tool("llm-run"), str(tmp_path / "none.llmir"), "--graph-plan"])
    assert res.returncode != 0
    assert "none.llmir" in res.stderr
