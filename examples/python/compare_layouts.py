#!/usr/bin/env python3
"""Compare pipeline layouts of a model by their simulated step time and bubble.

A layout places the model on the pp * vpp virtual stages ("|" between stages):
E = embedding, t*N = N decoder layers, L = final norm + LM head + loss. The
compiler's schedule simulator (--llm-pipeline-schedule) times each plan; the
ranks' shares come from the layout, weighing layers and the LM head by FLOPs.

    PYTHONPATH=python /usr/bin/python3 examples/python/compare_layouts.py
    PYTHONPATH=python /usr/bin/python3 examples/python/compare_layouts.py --config examples/models/gpt2-124m.json \\
        --pp 4 --microbatches 8 --layout "E,t*3|t*3|t*3|t*3,L" --layout "E,t*5|t*4|t*3|L"

GPT-2 124M's LM head (50257 x 768) costs about 4.5 decoder layers at seq 1024,
so the even split leaves the last stage the bottleneck; moving layers off it
shortens the step. A layout with twice as many stages as pp runs interleaved
(vpp = 2). Prints one row per layout; exits 1 if a layout is invalid.
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))

import llmir  # noqa: E402

DEFAULT_LAYOUTS = ["E,t*3|t*3|t*3|t*3,L", "E,t*5|t*4|t*3|L", "E,t*2|t*2|t*2|t*2|t*2|t|t|L"]


def plan_for(layout: str, pp: int, microbatches: int, schedule: str) -> llmir.Plan:
    """pp from the command line; vpp from the layout's stage count (interleaved when > 1)."""
    stages = layout.count("|") + 1
    if stages % pp:
        raise ValueError(f"layout {layout!r} has {stages} stages, not a multiple of pp={pp}")
    vpp = stages // pp
    return llmir.Plan(pp=pp, vpp=vpp, microbatches=microbatches, layout=layout,
                      schedule="interleaved" if vpp > 1 else schedule)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=os.path.join(HERE, "..", "models", "gpt2-124m.json"))
    ap.add_argument("--seq", type=int, default=0, help="tokens per sequence (default: the model's positions)")
    ap.add_argument("--pp", type=int, default=4)
    ap.add_argument("--microbatches", type=int, default=8)
    ap.add_argument("--schedule", default="1f1b", help="for layouts with pp stages (gpipe, 1f1b, zb-h1)")
    ap.add_argument("--layout", action="append", help="repeat to compare several (default: three for 12 layers)")
    ap.add_argument("--svg", default=None, help="write the best layout's timeline here")
    args = ap.parse_args()

    model = llmir.from_hf_config(args.config)
    rows = []
    for layout in args.layout or DEFAULT_LAYOUTS:
        try:
            plan = plan_for(layout, args.pp, args.microbatches, args.schedule)
            sim = plan.simulate(model, args.seq)
        except (ValueError, llmir.CompileError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        rows.append((layout, plan, sim))

    print(f"{model.model_type}, {model.num_layers} layers, pp={args.pp}, {args.microbatches} micro-batches "
          f"(time unit: one micro-batch's forward through the whole model)")
    print(f"{'layout':<34} {'schedule':<17} {'step time':>9} {'bubble':>7}  rank loads      peak in-flight")
    for layout, plan, sim in rows:
        loads = " ".join(f"{x:.2f}" for x in sim["rank_loads"])
        print(f"{layout:<34} {plan.schedule + ('/vpp=' + str(plan.vpp) if plan.vpp > 1 else ''):<17} "
              f"{sim['step_time']:>9.3f} {sim['bubble']:>7.1%}  {loads:<15} {sim['peak_in_flight']}")
    best = min(rows, key=lambda r: r[2]["step_time"])
    worst = max(rows, key=lambda r: r[2]["step_time"])
    print(f"best: {best[0]} ({worst[2]['step_time'] / best[2]['step_time']:.2f}x faster than {worst[0]})")
    if args.svg:
        best[1].simulate(model, args.seq, svg=args.svg)
        print(f"timeline: {args.svg}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
