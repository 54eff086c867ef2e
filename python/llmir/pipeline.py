"""Pipeline schedules from Python: build, verify and simulate them with the
compiler's `--llm-pipeline-schedule` pass.

    import llmir
    sim = llmir.simulate_schedule(pp=4, microbatches=8, schedule="1f1b")
    sim["makespan"], sim["bubble"], sim["ranks"][0]     # 33.0, 0.2727, ['F0s0', ...]

    # A schedule of your own (one action list per rank), verified by the
    # compiler with the same diagnostics as a schedule file:
    sim = llmir.simulate_schedule(actions=[["F0s0", "F1s0", "B0s0", "B1s0"],
                                           ["F0s1", "B0s1", "F1s1", "B1s1"]])

Actions are F|B|I|W<micro-batch>s<stage> (B = full backward, I/W = its
input-grad and weight-grad halves). A schedule that deadlocks, misses an action
or breaks a memory bound raises llmir.CompileError naming the rank and step.
The schedule is not executed yet: this is the planning and checking half.
"""

from __future__ import annotations

import os
import re
import tempfile
from typing import Dict, List, Optional, Sequence

from .driver import CompileError, _errors, _run_tool, tool_path

__all__ = ["format_schedule", "simulate_schedule"]


def format_schedule(actions: Sequence[Sequence[str]]) -> str:
    """Per-rank action lists in the compiler's schedule file format (printSchedule's):
    one "rank R: F0s0 F1s0 ..." line per rank."""
    return "".join(f"rank {rank}: {' '.join(acts)}\n" for rank, acts in enumerate(actions))


def simulate_schedule(pp: int = 4, microbatches: int = 8, schedule: str = "1f1b", vpp: int = 1, *,
                      actions: Optional[Sequence[Sequence[str]]] = None, tf: float = 1.0, tb: float = 2.0,
                      ti: float = 1.0, tw: float = 1.0, tcomm: float = 0.0, max_in_flight: int = 0,
                      svg: Optional[str] = None, svg_caption: str = "",
                      stage_costs: Optional[Sequence[float]] = None) -> Dict[str, object]:
    """Builds (or takes `actions`, one list per rank), verifies and simulates a
    pipeline schedule. Costs are per rank's share of the layers (a chunk of an
    interleaved schedule takes tf / vpp). Returns {"schedule", "pp", "vpp",
    "microbatches", "ranks" (action lists), "makespan", "bubble" (idle share, 4 decimals),
    "steady_state_bubble" (idle share inside each rank's own span), "analytic_bubble" (None for user schedules and
    kinds without a closed form), "busy", "peak_in_flight"};
    with `svg`, also writes the timeline there (`svg_caption` begins its
    title). `stage_costs` (one per
    virtual stage, relative to an even split) models an uneven layout."""
    with tempfile.TemporaryDirectory(prefix="llmir-sched-") as work:
        module = os.path.join(work, "empty.mlir")
        with open(module, "w") as f:
            f.write("module {}\n")
        opts = [f"tf={tf}", f"tb={tb}", f"ti={ti}", f"tw={tw}", f"tcomm={tcomm}",
                f"max-in-flight={max_in_flight}"]
        if actions is not None:
            path = os.path.join(work, "user.sched")
            with open(path, "w") as f:
                f.write(format_schedule(actions))
            opts.append(f"file={path}")
        else:
            opts += [f"pp={pp}", f"microbatches={microbatches}", f"schedule={schedule}", f"vpp={vpp}"]
        if svg:
            opts.append(f"svg={os.path.abspath(svg)}")
            if svg_caption:
                if "'" in svg_caption:
                    raise ValueError(f"svg_caption may not hold a quote: {svg_caption!r}")
                opts.append(f"caption='{svg_caption}'")
        if stage_costs is not None:
            opts.append("stage-costs=" + ",".join(repr(float(c)) for c in stage_costs))
        res = _run_tool([tool_path("llm-opt"), module, f"--llm-pipeline-schedule={' '.join(opts)}",
                         "-o", os.devnull])
    if res.returncode != 0:  # drop the placeholder module's location
        raise CompileError(_errors(res.stderr).replace(f"{module}:1:1: ", ""))
    return _parse_report(res.stdout.decode())


def _parse_report(text: str) -> Dict[str, object]:
    head = re.search(r"pipeline schedule (\S+): pp=(\d+) vpp=(\d+) microbatches=(\d+)", text)
    sim = re.search(r"makespan (\S+) bubble (\S+) steady-state (\S+)(?: analytic (\S+))?", text)
    if not head or not sim:
        raise CompileError(f"unexpected --llm-pipeline-schedule report:\n{text}")
    ranks: List[List[str]] = []
    busy: List[float] = []
    peak: List[int] = []
    for line in text.splitlines():
        m = re.match(r"rank (\d+): busy (\S+) peak-in-flight (\d+)$", line)
        if m:
            busy.append(float(m.group(2)))
            peak.append(int(m.group(3)))
            continue
        m = re.match(r"rank (\d+): (.*)$", line)
        if m:
            ranks.append(m.group(2).split())
    return {
        "schedule": head.group(1), "pp": int(head.group(2)), "vpp": int(head.group(3)),
        "microbatches": int(head.group(4)), "ranks": ranks, "makespan": float(sim.group(1)),
        "bubble": float(sim.group(2)), "steady_state_bubble": float(sim.group(3)),
        "analytic_bubble": float(sim.group(4)) if sim.group(4) else None,
        "busy": busy, "peak_in_flight": peak,
    }
