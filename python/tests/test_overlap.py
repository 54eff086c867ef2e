"""Communication/computation overlap in llm-run (CPU, under mpirun), seen in
its --trace: with a simulated slow network (LLMIR_COMM_DELAY_NS_PER_BYTE) the
data-parallel gradient all-reduces run while the backward pass computes; with
--no-overlap they never do; the losses are bit-identical either way.
"""

import json
import os
import shutil

import pytest

from conftest import model_path
from test_e2e_cpu import compile_model, run, tool
from test_pipeline_e2e import compile_pipeline

from llmir import safetensors, config, trace  # noqa: E402
from llmir.weights import random_tokens, random_weights, save_tokens  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed")

MPIRUN = ["mpirun", "--oversubscribe", "--allow-run-as-root"]
DELAY = {"LLMIR_COMM_DELAY_NS_PER_BYTE": "50", "OPENBLAS_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def dp2(tmp_path_factory):
    """A gpt2-tiny training step for dp=2 with small gradient buckets, its
    weights and tokens."""
    d = tmp_path_factory.mktemp("overlap")
    cfg = config.load_config(model_path("gpt2-tiny"))
    safetensors.save_file(random_weights(cfg, seed=3), str(d / "w.safetensors"))
    save_tokens(random_tokens(cfg.vocab_size, 4000, seed=4), str(d / "t.npy"))
    prog = compile_model(model_path("gpt2-tiny"), d / "dp2.llmir", plan="dp=2", train=True,
                         batch=32, train_options="=bucket-bytes=20000")
    return d, prog


def run_dp2(dp2, name, *extra, env=DELAY, np=2):
    d, prog = dp2
    log, tr = d / f"{name}.jsonl", d / f"{name}.json"
    res = run([*MPIRUN, "-np", str(np), tool("llm-run"), str(prog), "--weights",
               str(d / "w.safetensors"), "--data", str(d / "t.npy"), "--steps", "4",
               "--log-json", str(log), "--trace", str(tr), *extra],
              env={**os.environ, **env}, timeout=300)
    return res, log, tr


def losses(log):
    # The printed decimal (%.9g) of each float loss: equal strings, equal bits.
    return [line.split('"loss": ')[1].split(",")[0] for line in log.read_text().splitlines()]


def test_comm_overlaps_compute_and_losses_are_identical(dp2):
    res, log, tr = run_dp2(dp2, "overlap")
    assert res.returncode == 0, res.stderr
    assert "no comm/compute overlap" not in res.stderr
    res_io, log_io, tr_io = run_dp2(dp2, "in-order", "--no-overlap")
    assert res_io.returncode == 0, res_io.stderr
    assert losses(log) == losses(log_io) and len(losses(log)) == 4

    events = trace.load(str(tr))
    assert {e["pid"] for e in events} == {0, 1}
    per_rank = trace.comm_hidden(events)
    for rank, (comm, hidden) in per_rank.items():
        names = {e["name"] for e in events if e["pid"] == rank and e["tid"] == 1}
        assert "all_reduce dp" in names and comm > 0, (rank, names, comm)
    # The compute lane ran kernels while the buckets were reduced: at least a
    # millisecond over the 4 steps, and a tenth of one inside a single
    # collective. (Not asserted per rank: on an overloaded machine the OS may
    # run one rank's comm thread only while its compute thread is descheduled.)
    assert sum(h for _, h in per_rank.values()) > 1000, per_rank
    assert max(covered_longest(events, r) for r in (0, 1)) > 100  # us

    in_order = trace.load(str(tr_io))
    for rank, (comm, hidden) in trace.comm_hidden(in_order).items():
        assert comm > 0 and hidden == 0, (rank, comm, hidden)


def covered_longest(events, rank):
    """The most compute time (us) that overlaps one comm interval of `rank`."""
    compute = trace.intervals(events, rank, "compute")
    return max(trace.covered(s, compute) for s in trace.intervals(events, rank, "comm"))


def test_trace_steps_and_lanes(dp2):
    res, _, tr = run_dp2(dp2, "steps", "--trace-steps", "1:3", "--no-overlap", env={})
    assert res.returncode == 0, res.stderr
    with open(tr) as f:
        doc = json.load(f)
    events = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    assert {e["args"]["step"] for e in events} == {1, 2}
    lanes = {(e["pid"], e["args"]["name"]) for e in doc["traceEvents"]
             if e["ph"] == "M" and e["name"] == "thread_name"}
    assert lanes == {(r, lane) for r in (0, 1) for lane in ("compute", "comm")}
    compute = {e["name"] for e in events if e["tid"] == 0}
    assert {"gemm", "adamw_multi", "cross_entropy"} <= compute, compute  # updates grouped per bucket
    for e in events:
        assert e["dur"] >= 0 and e["ts"] >= 0
    # The picture: one box per event, in the rank's compute or comm lane.
    svg = dp2[0] / "steps.svg"
    assert trace.render_svg(events, str(svg), "dp2, steps 1-2") == len(events)
    text = svg.read_text()
    assert text.count("<rect") == len(events) + 3  # + the legend's swatches
    assert "rank 1 comm" in text and "all_reduce dp" in text


@pytest.mark.parametrize("plan,ranks,comm", [
    ("tp=2", 2, "all_reduce tp"),
    ("pp=2 microbatches=2", 2, "send"),
    ("dp=2 tp=2 sp=true", 4, "reduce_scatter tp"),
    ("pp=2 dp=2 microbatches=2 schedule=zb-h1", 4, "recv"),
])
def test_trace_every_layout(dp2, plan, ranks, comm):
    """--trace of tensor, sequence and pipeline layouts: every rank's two lanes, their collectives or
    send/recv in the comm lane, and the same losses as the untraced run."""
    d = dp2[0]
    name = plan.replace(" ", "_").replace("=", "")
    if "pp=" in plan:
        prog, _ = compile_pipeline(model_path("gpt2-tiny"), d / f"{name}.llmir", plan)
    else:
        prog = compile_model(model_path("gpt2-tiny"), d / f"{name}.llmir", plan=plan, train=True, batch=4)
    base = [*MPIRUN, "-np", str(ranks), tool("llm-run"), str(prog), "--weights", str(d / "w.safetensors"),
            "--data", str(d / "t.npy"), "--steps", "2"]
    tr = d / f"{name}.trace.json"
    traced = run([*base, "--log-json", str(d / f"{name}.t.jsonl"), "--trace", str(tr)], timeout=300)
    assert traced.returncode == 0, traced.stderr
    plain = run([*base, "--log-json", str(d / f"{name}.p.jsonl")], timeout=300)
    assert plain.returncode == 0, plain.stderr
    assert losses(d / f"{name}.t.jsonl") == losses(d / f"{name}.p.jsonl")
    events = trace.load(str(tr))
    assert {e["pid"] for e in events} == set(range(ranks))
    for rank in range(ranks):
        names = {e["name"] for e in events if e["pid"] == rank and e["tid"] == 1}
        assert any(n.startswith(comm) for n in names), (rank, names)
        assert any(e["pid"] == rank and e["tid"] == 0 for e in events)


@pytest.mark.parametrize("extra,env,message", [
    (["--trace-steps", "3:1"], {}, "option --trace-steps: expected A:B with 0 <= A < B"),
    (["--trace-steps", "x"], {}, "option --trace-steps: expected A:B"),
    ([], {"LLMIR_COMM_DELAY_NS_PER_BYTE": "fast"},
     "LLMIR_COMM_DELAY_NS_PER_BYTE='fast': expected a number of nanoseconds"),
])
def test_bad_trace_options(dp2, extra, env, message):
    res, _, _ = run_dp2(dp2, "bad", *extra, env=env)
    assert res.returncode != 0
    assert message in res.stderr, res.stderr


def test_stalled_rank_is_named_by_the_comm_thread_timeout(dp2):
    """Rank 0's comm thread sleeps 6 s after its first gradient bucket (the
    delay knob, set for rank 0 alone): rank 1's next all-reduce times out on its
    comm thread, and the error reaches the main thread naming rank, op, step
    and the rank that did not arrive."""
    d, prog = dp2
    args = [tool("llm-run"), str(prog), "--weights", str(d / "w.safetensors"), "--data",
            str(d / "t.npy"), "--steps", "1", "--timeout", "2"]
    res = run([*MPIRUN, "-np", "1", "env", "LLMIR_COMM_DELAY_NS_PER_BYTE=100000", *args,
               ":", "-np", "1", *args], timeout=120)
    assert res.returncode != 0
    assert "rank 1, op 'all_reduce', step 0:" in res.stderr, res.stderr
    assert "timed out after 2" in res.stderr and "rank(s) 0 did not arrive" in res.stderr, res.stderr
