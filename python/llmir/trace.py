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


_COLORS = {"compute": "#4c78a8", "wait": "#e45756", "comm": "#f58518"}


def span_us(events: List[dict]) -> float:
    """First start to last end of the events, in microseconds."""
    return max(e["ts"] + e["dur"] for e in events) - min(e["ts"] for e in events)


def render_svg(events: List[dict], path: str, title: str = "", width: int = 1200,
               time_span_us: float = 0.0) -> int:
    """Draws the events as an SVG timeline: per rank a compute lane (kernels; blocked-on-comm waits in red) and a
    comm lane (collectives, send/recv; the comm thread's waits for compute in red), a box per event at its measured
    start and length, a time axis in ms and a legend; event names are in each box's tooltip. `time_span_us` fixes
    the axis (e.g. the longer of two runs drawn side by side; default: these events' span). Returns the number of
    boxes drawn."""
    from xml.sax.saxutils import escape

    if not events:
        raise ValueError("render_svg: the trace has no complete events")
    t0 = min(e["ts"] for e in events)
    span = max(time_span_us, span_us(events), 1e-9)
    ranks = sorted({e["pid"] for e in events})
    left, top, lane, gap = 90, 40, 18, 10
    plot = width - left - 20
    height = top + len(ranks) * (2 * lane + gap) + 50
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<text x="{left}" y="18" font-size="13">{escape(title)}</text>']
    boxes = 0
    for i, rank in enumerate(ranks):
        y = top + i * (2 * lane + gap)
        out.append(f'<text x="4" y="{y + lane - 5}">rank {rank} compute</text>')
        out.append(f'<text x="4" y="{y + 2 * lane - 5}">rank {rank} comm</text>')
        for e in events:
            if e["pid"] != rank:
                continue
            x = left + (e["ts"] - t0) / span * plot
            w = max(e["dur"] / span * plot, 0.3)
            ly = y if e.get("tid", 0) == 0 else y + lane
            color = _COLORS.get(e.get("cat", ""), "#999999")
            out.append(f'<rect x="{x:.2f}" y="{ly + 1}" width="{w:.2f}" height="{lane - 2}" fill="{color}">'
                       f'<title>{escape(str(e.get("name", "")))} {e["dur"]:.0f} us</title></rect>')
            boxes += 1
    axis_y = top + len(ranks) * (2 * lane + gap) + 5
    out.append(f'<line x1="{left}" y1="{axis_y}" x2="{left + plot}" y2="{axis_y}" stroke="black"/>')
    for k in range(6):
        x = left + k * plot / 5
        out.append(f'<text x="{x:.1f}" y="{axis_y + 14}" text-anchor="middle">{k * span / 5 / 1000:.1f} ms</text>')
    lx = left
    for name, color in (("compute", _COLORS["compute"]), ("waiting for comm", _COLORS["wait"]),
                        ("communication", _COLORS["comm"])):
        out.append(f'<rect x="{lx}" y="{axis_y + 24}" width="12" height="10" fill="{color}"/>'
                   f'<text x="{lx + 16}" y="{axis_y + 33}">{name}</text>')
        lx += 150
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    return boxes
