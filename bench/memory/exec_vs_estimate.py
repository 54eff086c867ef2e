#!/usr/bin/env python3
"""Memory estimate (--llm-memory-report) vs the exec memory plan (--llm-lower-to-exec).

For each model / batch / layout: the estimator's per-rank total and the
exec program's arena_bytes (params + AdamW state + inputs + planned
temporaries), and their ratio. `--check TOL` exits 1 if any ratio is off by
more than TOL (used by test/Analysis/memory-vs-exec.test).

    python3 bench/memory/exec_vs_estimate.py [--bin build/bin] [--check 0.10]
"""
import argparse
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CASES = [
    # (config, batch, seq, partition options or "", train-step options)
    ("gpt2-tiny", 2, 16, ""),
    ("gpt2-tiny", 8, 64, ""),
    ("gpt2-tiny", 32, 64, ""),
    ("llama-tiny", 2, 16, ""),
    ("llama-tiny", 8, 64, ""),
    ("llama-tiny", 32, 64, ""),
    ("gpt2-tiny", 8, 64, "dp=2"),
    ("gpt2-tiny", 8, 64, "tp=2"),
    ("gpt2-tiny", 8, 64, "tp=2 sp=true"),
    ("gpt2-tiny", 8, 64, "dp=2 tp=2 sp=true zero=1"),
    ("llama-tiny", 8, 64, "tp=2"),
    ("gpt2-tiny", 8, 64, "recompute=full"),
    ("llama-tiny", 32, 64, "recompute=full"),
    ("gpt2-tiny", 16, 64, "tp=2 sp=true recompute=full"),
    ("gpt2-124m", 1, 128, ""),
    ("gpt2-124m", 4, 256, "tp=2"),
    ("llama-tiny", 16, 64, "dp=2 tp=2 sp=true"),
    # ZeRO-3: parameter chunks, gathered per layer section.
    ("gpt2-tiny", 8, 64, "dp=2 zero=3"),
    ("llama-tiny", 16, 64, "dp=2 tp=2 zero=3"),
    ("llama-tiny", 16, 64, "dp=2 zero=3 reshard-after-forward=false"),
    ("gpt2-124m", 4, 256, "dp=2 zero=3"),
    # Context parallelism: seq/cp tokens per rank, K/V gathered whole.
    ("gpt2-tiny", 8, 64, "cp=2"),
    ("gpt2-tiny", 8, 64, "cp=4"),
    ("llama-tiny", 8, 64, "cp=2"),
    ("llama-tiny", 8, 64, "cp=4"),
    ("llama-tiny", 8, 64, "dp=2 cp=2"),
    ("gpt2-tiny", 8, 64, "cp=2 tp=2"),
]


def run(cmd, stdin=None):
    r = subprocess.run(cmd, input=stdin, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)}\n{r.stderr}")
    return r.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    ap.add_argument("--check", type=float, default=None)
    args = ap.parse_args()
    translate = os.path.join(args.bin, "llm-translate")
    opt = os.path.join(args.bin, "llm-opt")
    print(f"{'model':<11}{'batch':>6}{'seq':>5}  {'layout':<28}{'estimate':>12}"
          f"{'exec arena':>12}{'ratio':>8}  peak phase terms (act/grad/work)")
    worst = 0.0
    for cfg, b, s, layout in CASES:
        model = run([translate, "--import-hf-config",
                     os.path.join(ROOT, "examples", "models", cfg + ".json"),
                     "--batch", str(b), "--seq", str(s)])
        passes = []
        if layout:
            passes.append(f"--llm-partition={layout}")
        report = json.loads(run([opt] + passes + ["--llm-memory-report=json", "-o", "/dev/null"],
                                stdin=model))
        exec_ir = run([opt] + passes + ["--tfm-build-train-step", "--llm-lower-to-exec"],
                      stdin=model)
        arenas = [int(x) for x in re.findall(r"arena_bytes = (\d+)", exec_ir)]
        rank = report["ranks"][0]
        est = rank["total_bytes"]
        ratio = est / max(arenas)
        worst = max(worst, abs(ratio - 1))
        terms = "%d/%d/%d KiB" % (rank["activation_bytes"] / 1024, rank["grad_bytes"] / 1024,
                                  rank["working_bytes"] / 1024)
        print(f"{cfg:<11}{b:>6}{s:>5}  {layout or '(single rank)':<28}{int(est):>12}"
              f"{max(arenas):>12}{ratio:>8.3f}  {terms}")
    print(f"largest deviation: {100 * worst:.1f}%")
    if args.check is not None and worst > args.check:
        print(f"FAIL: deviation above {100 * args.check:.0f}%")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
