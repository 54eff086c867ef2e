#!/usr/bin/env python3
"""Training step with and without the fused GEMM epilogues on CPU: the same model, weights and windows compiled
with --llm-lower-to-exec (gemm_bias_gelu, gemm_dgelu_bgrad) and --llm-lower-to-exec=fuse-epilogues=false (gemm,
gelu_tanh, gelu_tanh_grad, sum_rows), run alternately.

    /usr/bin/python3 bench/gemm_epilogue_cpu.py [--model gpt2-124m] [--batch 2] [--seq 128] [--steps 7] [--rounds 1]
                                                [--compute f32|bf16] [--threads N]

Prints the median step time of each (the steps after the warm-up, pooled over the rounds), the ratio
unfused/fused (> 1: fusion is faster), the same for the fastest step, the fused kernels per program, the
compiler's temporary peak of both and the largest loss difference (exit 1 if it exceeds 1e-6 relative for f32, 1e-2 for bf16). Never fails on time.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import _common as common


def main() -> int:
    p = common.add_common_args(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    p.add_argument("--compute", choices=["f32", "bf16"], default="f32")
    p.set_defaults(batch=2, seq=128, steps=7)
    args = p.parse_args()
    cfg_path = common.check_args(args)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="llmir-epilogue-"))
    work.mkdir(parents=True, exist_ok=True)
    env = common.thread_env(args.threads, args.openblas_coretype)
    weights, tokens = common.make_inputs(args, cfg_path, work, env)
    precision = [f"--llm-mixed-precision=compute={args.compute}"] if args.compute != "f32" else []
    sides = {}
    for tag, lower in (("fused", "--llm-lower-to-exec"), ("unfused", "--llm-lower-to-exec=fuse-epilogues=false")):
        program, exec_mlir = common.compile_program(
            args, cfg_path, work, [*precision, "--tfm-build-train-step", lower], f"{args.compute}-{tag}")
        text = exec_mlir.read_text()
        sides[tag] = {"program": program, "ms": [], "loss": [],
                      "fused": len(re.findall(r'exec\.kernel "gemm_(?:bias_gelu|dgelu_bgrad)"', text)),
                      "peak": int(re.search(r"temp_peak_bytes = (\d+)", text).group(1))}
    for r in range(args.rounds):
        for tag, side in sides.items():
            log = work / f"{tag}.jsonl"
            cmd = common.llm_run_cmd(args, side["program"], weights, tokens, log, "--lr", "3e-4")
            if subprocess.run(cmd, env=env).returncode:
                sys.exit(f"error: llm-run ({tag}) failed")
            times, side["loss"] = common.read_step_log(log)
            side["ms"] += times[args.warmup:]
            print(f"round {r}: {tag:<7} step ms: {' '.join(f'{t:.0f}' for t in times)}", flush=True)
    common.print_settings(args, len(sides["fused"]["ms"]))
    fused, unfused = (statistics.median(sides[t]["ms"]) for t in ("fused", "unfused"))
    # The fastest step of each side as well: less sensitive than the median to other load on a shared machine.
    fused_min, unfused_min = (min(sides[t]["ms"]) for t in ("fused", "unfused"))
    header = (f"{'model':<12} {'shape':<8} {'compute':<7} {'fused ms':>9} {'unfused ms':>11} {'unfused/fused':>14} "
              f"{'fused kernels':>14} {'peak fused/unfused (B)':>24}")
    print(header)
    print("-" * len(header))
    peaks = f"{sides['fused']['peak']}/{sides['unfused']['peak']}"
    print(f"{cfg_path.stem:<12} {args.batch}x{args.seq:<6} {args.compute:<7} {fused:>9.0f} {unfused:>11.0f} "
          f"{unfused / fused:>14.3f} {sides['fused']['fused']:>14} {peaks:>24}")
    print(f"fastest step: fused {fused_min:.0f} ms, unfused {unfused_min:.0f} ms, unfused/fused "
          f"{unfused_min / fused_min:.3f}")
    a, b = sides["fused"]["loss"], sides["unfused"]["loss"]
    worst = max(abs(x - y) / abs(y) for x, y in zip(a, b))
    tol = 1e-6 if args.compute == "f32" else 1e-2
    ok = len(a) == len(b) == args.steps and worst <= tol
    print(f"losses fused vs unfused: max rel diff {worst:.2e} over {len(a)} steps (tol {tol:g}): "
          f"{'ok' if ok else 'MISMATCH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
