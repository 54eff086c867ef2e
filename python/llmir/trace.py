"""Reading llm-run --trace files (Chrome/Perfetto JSON): how much of each
rank's communication the compute stream hid.

Each rank is a pid with two lanes: tid 0 compute (cat "compute"; cat "wait" is
time the compute stream spent blocked on the comm stream), tid 1 comm (cat
"comm").  Times are microseconds.
"""

from __future__ import annotations

import json
from typing import Dict, List, Tuple

Interval = Tuple[float, float]


def load(path: str) -> List[dict]:
    """The complete ("X") events of a trace file."""
    with open(path) as f:
        return [e for e in json.load(f)["traceEvents"] if e.get("ph") == "X"]


def intervals(events: List[dict], rank: int, cat: str) -> List[Interval]:
    """[start, end) of the rank's events of category `cat`, sorted."""
    return sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                  if e["pid"] == rank and e["cat"] == cat)


def _union(spans: List[Interval]) -> List[Interval]:
    out: List[Interval] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def covered(span: Interval, union: List[Interval]) -> float:
    """Length of `span` that the (disjoint, sorted) intervals cover."""
    return sum(max(0.0, min(span[1], b) - max(span[0], a)) for a, b in union)


def comm_hidden(events: List[dict]) -> Dict[int, Tuple[float, float]]:
    """Per rank: (communication time, the part of it that overlaps compute)."""
    out = {}
    for rank in sorted({e["pid"] for e in events}):
        compute = _union(intervals(events, rank, "compute"))
        comm = intervals(events, rank, "comm")
        out[rank] = (sum(b - a for a, b in comm), sum(covered(s, compute) for s in comm))
    return out


def hidden_fraction(events: List[dict]) -> float:
    """Overlapped communication time over all communication time (all ranks)."""
    per_rank = comm_hidden(events).values()
    total = sum(t for t, _ in per_rank)
    return sum(h for _, h in per_rank) / total if total > 0 else 0.0
