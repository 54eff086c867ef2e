"""The pipeline schedule generators seen from the outside (`llm-opt --llm-pipeline-schedule`).

Every kind the compiler lists is generated, verified and simulated for p in {2, 4}; a hand-broken copy of each new
schedule (zb-h2, v-half, v-min, dualpipev) is rejected by the verifier naming the rank, the step and the action; the
memory claims hold (v-half <= p, v-min <= ceil(2p/3) chunk activations, zb-h2 2(p-r)-1 micro-batches on rank r).
"""

import math
import re
import subprocess

import pytest

from llmir.driver import SCHEDULES, V_SCHEDULES, tool_path


def schedule(opts, text_in="module {}\n"):
    return subprocess.run([tool_path("llm-opt"), f"--llm-pipeline-schedule={opts}", "-o", "/dev/null"],
                          input=text_in, capture_output=True, text=True)


def chunks(name):
    return 2 if name in V_SCHEDULES or name == "interleaved" else 1


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("p", [2, 4])
def test_every_kind_is_generated_and_verified(name, p):
    m = 2 * p if name in ("interleaved", "dualpipev") else 8
    res = schedule(f"pp={p} microbatches={m} schedule={name} vpp={chunks(name)}")
    assert res.returncode == 0, res.stderr
    assert re.search(r"^makespan [\d.]+ bubble [\d.]+ steady-state [\d.]+", res.stdout, re.M), res.stdout


def peaks(stdout):
    return [int(x) for x in re.findall(r"peak-in-flight (\d+)", stdout)]


@pytest.mark.parametrize("p", [2, 4, 8])
def test_memory_bounds(p):
    m = 4 * p
    zbh2 = schedule(f"pp={p} microbatches={m} schedule=zb-h2")
    assert peaks(zbh2.stdout) == [min(m, 2 * (p - r) - 1) for r in range(p)], zbh2.stdout
    half = schedule(f"pp={p} microbatches={m} schedule=v-half vpp=2")
    assert max(peaks(half.stdout)) <= max(2, p), half.stdout
    vmin = schedule(f"pp={p} microbatches={m} schedule=v-min vpp=2")
    assert max(peaks(vmin.stdout)) <= max(2, math.ceil(2 * p / 3)), vmin.stdout
    one = schedule(f"pp={p} microbatches={m} schedule=1f1b")
    # 1F1B holds p micro-batches on rank 0, i.e. 2p chunk activations: v-half half of it, v-min a third (+ rounding).
    full = 2 * peaks(one.stdout)[0]
    assert 2 * max(peaks(half.stdout)) <= full and 3 * max(peaks(vmin.stdout)) <= full + 2


@pytest.mark.parametrize("name", ["zb-h2", "v-half", "v-min", "dualpipev"])
def test_hand_broken_schedule_is_rejected(name, tmp_path):
    p, m = 2, 4
    res = schedule(f"pp={p} microbatches={m} schedule={name} vpp={chunks(name)}")
    assert res.returncode == 0, res.stderr
    lists = [line for line in res.stdout.splitlines() if re.match(r"^rank \d+: [FBIW]\d", line)]
    assert len(lists) == p
    # Move rank 0's last action (a backward or W of the last micro-batch) to the front.
    head, actions = lists[0].split(":")
    actions = actions.split()
    broken = [f"{head}: {' '.join([actions[-1]] + actions[:-1])}"] + lists[1:]
    path = tmp_path / "broken.sched"
    path.write_text("\n".join(broken) + "\n")
    bad = schedule(f"file={path}")
    assert bad.returncode != 0
    assert f"rank 0 step 0 ({actions[-1]})" in bad.stderr and len(bad.stderr) < 400, bad.stderr
