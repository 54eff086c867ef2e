#!/usr/bin/env python3
"""Communication/computation overlap on CPU ranks: a data-parallel training step under mpirun, llm-run with
overlap (the default: the gradient all-reduces run on a comm thread during the backward pass) against
llm-run --no-overlap (every instruction in program order), side by side.

    /usr/bin/python3 bench/overlap_cpu.py [--model gpt2-124m] [--layers L] [--np 4] [--batch 8] [--seq 128]
        [--delay-ns-per-byte 2] [--bucket-bytes 4000000] [--steps 8] [--threads 1] [--rounds 1]

On one machine MPI is far faster than a network, so LLMIR_COMM_DELAY_NS_PER_BYTE (--delay-ns-per-byte) makes
every collective sleep that long per byte.  Both runs write --trace (the timed steps only); the table gives the
median step time, the communication time per rank and step (the comm lane), and the hidden fraction: the part of
the communication during which the same rank's compute lane was busy (llmir.trace).  Checks that both runs'
losses are bit-identical (exit 1 if not).  Never fails on time (STYLE.md "Benchmarks").  See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import _common as common

sys.path.insert(0, str(common.REPO / "python"))
from llmir import trace  # noqa: E402


def derived_config(cfg_path: Path, layers: int, work: Path) -> Path:
    """The model's config with `layers` layers (a smaller model of the same width)."""
    cfg = json.loads(cfg_path.read_text())
    key = "n_layer" if "n_layer" in cfg else "num_hidden_layers"
    cfg[key] = layers
    out = work / f"{cfg_path.stem}-{layers}l.json"
    out.write_text(json.dumps(cfg, indent=1))
    return out


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="llmir-bench-") as tmp:
        return bench(Path(tmp))


def bench(tmp: Path) -> int:
    p = common.add_common_args(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    p.add_argument("--layers", type=int, help="override the model's layer count")
    p.add_argument("--np", type=int, default=4, help="ranks (= dp; default 4)")
    p.add_argument("--delay-ns-per-byte", type=float, default=2.0,
                   help="LLMIR_COMM_DELAY_NS_PER_BYTE of both runs (default 2; 0: MPI as is)")
    p.add_argument("--bucket-bytes", type=int, default=4_000_000,
                   help="gradient all-reduce bucket size (--tfm-build-train-step bucket-bytes; default 4e6)")
    p.add_argument("--svg", help="draw the last round's first timed step of both runs as OUT-overlap.svg and "
                   "OUT-no-overlap.svg (llmir.trace.render_svg)")
    p.set_defaults(threads=1, batch=8, seq=128)
    args = p.parse_args()
    cfg_path = common.check_args(args)
    if args.batch % args.np:
        sys.exit(f"error: --batch {args.batch} is not a multiple of --np {args.np}")
    work = Path(args.workdir) if args.workdir else tmp
    work.mkdir(parents=True, exist_ok=True)
    if args.layers:
        cfg_path = derived_config(cfg_path, args.layers, work)
    env = common.thread_env(args.threads, args.openblas_coretype)
    env["LLMIR_COMM_DELAY_NS_PER_BYTE"] = str(args.delay_ns_per_byte)
    program, _ = common.compile_program(
        args, cfg_path, work,
        [f"--llm-partition=dp={args.np}", f"--tfm-build-train-step=bucket-bytes={args.bucket_bytes}",
         "--llm-lower-to-exec"], f"dp{args.np}")
    weights, tokens = common.make_inputs(args, cfg_path, work, env)

    def side(name: str, *extra: str):
        log, tr = work / f"{name}.jsonl", work / f"{name}.trace.json"
        cmd = ["mpirun", "--oversubscribe", "--allow-run-as-root", "-np", str(args.np),
               *common.llm_run_cmd(args, program, weights, tokens, log, "--trace", str(tr),
                                   "--trace-steps", f"{args.warmup}:", *extra)]
        if subprocess.run(cmd, env=env).returncode:
            sys.exit(f"error: llm-run ({name}) failed")
        times, losses = common.read_step_log(log)
        return times, losses, trace.load(str(tr))

    rows = {"overlap": ([], None, None), "--no-overlap": ([], None, None)}
    for r in range(args.rounds):
        for name, extra in (("overlap", ()), ("--no-overlap", ("--no-overlap",))):
            times, losses, events = side(name.strip("-"), *extra)
            print(f"round {r}: {name:<12} step ms: {' '.join(f'{t:.0f}' for t in times)}", flush=True)
            rows[name] = (rows[name][0] + times[args.warmup:], losses, events)

    timed = args.steps - args.warmup
    print(f"\n{cfg_path.stem}, dp={args.np} ranks, batch {args.batch}, seq {args.seq}, {args.threads} thread(s)/rank, "
          f"delay {args.delay_ns_per_byte:g} ns/byte, buckets {args.bucket_bytes} B, median of {timed} steps x "
          f"{args.rounds} round(s)")
    print(f"{'':<13} {'step ms':>9} {'comm ms/step':>13} {'hidden':>7}")
    medians = {}
    for name, (times, _, events) in rows.items():
        per_rank = trace.comm_hidden(events)
        comm = sum(c for c, _ in per_rank.values()) / 1e3 / len(per_rank) / timed
        medians[name] = statistics.median(times)
        print(f"{name:<13} {medians[name]:>9.1f} {comm:>13.1f} {100 * trace.hidden_fraction(events):>6.1f}%")
    print(f"speedup of overlap: {medians['--no-overlap'] / medians['overlap']:.2f}x")
    if args.svg:
        steps = {}
        for name, (_, _, events) in rows.items():
            first = min(e["args"]["step"] for e in events)
            steps[name] = (first, [e for e in events if e["args"]["step"] == first])
        longest = max(trace.span_us(step) for _, step in steps.values())
        for name, (first, step) in steps.items():
            out = f"{args.svg}-{name.strip('-')}.svg"
            trace.render_svg(step, out, f"{cfg_path.stem}, dp={args.np}, {name}, step {first}: "
                                        f"{trace.span_us(step) / 1e3:.0f} ms (llm-run --trace, "
                                        f"{args.delay_ns_per_byte:g} ns/byte comm delay)", time_span_us=longest)
            print(f"wrote {out}")
    same = rows["overlap"][1] == rows["--no-overlap"][1]
    print(f"losses bit-identical: {'yes' if same else 'NO'} ({rows['overlap'][1]})")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
