#!/usr/bin/env python3
"""Pipeline compile time: GPT-3 175B (GPT-2 form) at 12/24/48/96 layers compiled to per-stage programs.

    /usr/bin/python3 bench/pipeline_compile.py [--layers 12,24,48,96] [--runs 5] [--plan "tp=8 pp=8 dp=16 ..."]

Each size: examples/models/gpt3-175b.json with n_layer replaced, imported once with
`llm-translate --import-hf-config --batch 512 --seq 2048` (512 = dp 16 x 32 micro-batches of 1), then
`llm-opt --llm-partition="tp=8 pp=8 dp=16 microbatches=32 schedule=1f1b" --tfm-build-train-step
--llm-pipeline-split --llm-lower-to-exec` to the 8 per-stage exec programs (static memory plan included) and
`llm-translate --export-program`.  Reports the median wall time of llm-opt and of the export, the per-pass
split from -mlir-timing, the number of exec instructions, and time per layer relative to the smallest size
(1.00 = linear growth).  No peer: Megatron-LM builds its stages at run time.  Never fails on time.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PASSES = ["LLMPartition", "TfmBuildTrainStep", "LLMPipelineSplit", "LowerToExec", "Output"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", default="12,24,48,96")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--plan", default="tp=8 pp=8 dp=16 microbatches=32 schedule=1f1b")
    p.add_argument("--build", default=str(REPO / "build"))
    args = p.parse_args()
    bin_dir = Path(args.build) / "bin"
    base = json.loads((REPO / "examples" / "models" / "gpt3-175b.json").read_text())
    passes = [f"--llm-partition={args.plan}", "--tfm-build-train-step", "--llm-pipeline-split",
              "--llm-lower-to-exec"]
    print(f"plan: {args.plan}; batch {args.batch} x seq {args.seq}; median of {args.runs} runs")
    header = (f"{'layers':>6} {'llm-opt s':>9} {'export s':>8} " +
              " ".join(f"{n[:14]:>14}" for n in PASSES) + f" {'instrs':>8} {'ms/layer':>8} {'vs linear':>9}")
    print(header)
    first = None
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for layers in [int(x) for x in args.layers.split(",")]:
            cfg = dict(base, n_layer=layers)
            cfg_path = work / f"gpt3-{layers}.json"
            cfg_path.write_text(json.dumps(cfg))
            model = work / f"gpt3-{layers}.mlir"
            subprocess.run([bin_dir / "llm-translate", "--import-hf-config", cfg_path, "--batch",
                            str(args.batch), "--seq", str(args.seq), "-o", model], check=True)
            exec_ir = work / f"gpt3-{layers}.exec.mlir"
            walls, exports, pass_times = [], [], {n: [] for n in PASSES}
            for _ in range(args.runs):
                t0 = time.perf_counter()
                res = subprocess.run([bin_dir / "llm-opt", model, *passes, "-o", exec_ir,
                                      "--mlir-timing"], capture_output=True, text=True)
                walls.append(time.perf_counter() - t0)
                if res.returncode != 0:
                    print(res.stderr, file=sys.stderr)
                    return 1
                for name in PASSES:
                    m = re.search(r"^\s*([0-9.]+) \(\s*[0-9.]+%\)\s+" + name + r"\s*$", res.stderr, re.M)
                    pass_times[name].append(float(m.group(1)) if m else float("nan"))
                t0 = time.perf_counter()
                subprocess.run([bin_dir / "llm-translate", "--export-program", exec_ir, "-o",
                                work / "p.llmir"], check=True)
                exports.append(time.perf_counter() - t0)
            text = exec_ir.read_text()
            programs = text.count("exec.program @")
            instrs = len(re.findall(r"^\s+exec\.(kernel|gemm|all_reduce|all_gather|reduce_scatter|send|recv)\b",
                                    text, re.M))
            wall = statistics.median(walls)
            per_layer = wall / layers
            first = first or per_layer
            print(f"{layers:>6} {wall:>9.2f} {statistics.median(exports):>8.2f} " +
                  " ".join(f"{statistics.median(pass_times[n]):>14.3f}" for n in PASSES) +
                  f" {instrs:>8} {per_layer * 1e3:>8.1f} {per_layer / first:>9.2f}")
            assert programs == int(re.search(r"pp=(\d+)", args.plan).group(1)), programs
    return 0


if __name__ == "__main__":
    sys.exit(main())
