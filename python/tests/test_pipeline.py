"""llmir.simulate_schedule: the compiler's pipeline schedules from Python."""

import os

import pytest

import llmir

try:
    llmir.tool_path("llm-opt")
except FileNotFoundError:
    if os.environ.get("LLMIR_REQUIRE_TOOLS") == "1":
        raise
    pytest.skip("LLMIR tools not built", allow_module_level=True)


def test_1f1b_matches_the_worked_example():
    s = llmir.simulate_schedule(pp=4, microbatches=8, schedule="1f1b")
    assert (s["pp"], s["vpp"], s["microbatches"]) == (4, 1, 8)
    assert s["makespan"] == 33.0
    assert s["bubble"] == s["analytic_bubble"] == pytest.approx(3 / 11, abs=1e-4)
    assert s["ranks"][3][:4] == ["F0s3", "B0s3", "F1s3", "B1s3"]
    assert s["peak_in_flight"] == [4, 3, 2, 1] and s["busy"] == [24.0] * 4


@pytest.mark.parametrize("kind,vpp", [("gpipe", 1), ("1f1b", 1), ("interleaved", 2), ("zb-h1", 1)])
def test_every_kind_matches_its_formula(kind, vpp):
    s = llmir.simulate_schedule(pp=4, microbatches=16, schedule=kind, vpp=vpp)
    assert s["bubble"] == pytest.approx(s["analytic_bubble"], abs=1e-4)
    assert len(s["ranks"]) == 4


def test_user_schedule_and_svg(tmp_path):
    svg = tmp_path / "s.svg"
    s = llmir.simulate_schedule(actions=[["F0s0", "F1s0", "B0s0", "B1s0"],
                                         ["F0s1", "B0s1", "F1s1", "B1s1"]], svg=str(svg))
    assert s["schedule"] == "file" and s["analytic_bubble"] is None
    assert s["makespan"] == 9.0  # rank 0: F0 F1 [0,2], B0 [4,6] after B0s1, B1 [7,9] after B1s1
    assert svg.read_text().count("<rect") >= 8


def test_deadlocking_user_schedule_is_a_compile_error():
    with pytest.raises(llmir.CompileError) as e:
        llmir.simulate_schedule(actions=[["F0s0", "B0s0", "F1s0", "B1s0"],
                                         ["F0s1", "F1s1", "B0s1", "B1s1"]])
    msg = str(e.value)
    assert msg.startswith("error: --llm-pipeline-schedule: invalid schedule: deadlock")
    assert "rank 0 step 1 (B0s0) waits for B0s1 on rank 1" in msg


def test_bad_options_are_compile_errors():
    with pytest.raises(llmir.CompileError, match="multiple of pp"):
        llmir.simulate_schedule(pp=4, microbatches=10, schedule="interleaved", vpp=2)
    with pytest.raises(llmir.CompileError, match="bad action"):
        llmir.simulate_schedule(actions=[["F0s0", "B0"]])
