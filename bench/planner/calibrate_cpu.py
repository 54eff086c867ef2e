#!/usr/bin/env python3
"""The `cpu` device preset against measured llm-run train steps on this host.

Trains a few GPT-2 shapes for 4 steps on one CPU rank, takes the median
step time after the first (warm-up) step, and prints it beside
--llm-simulate="cluster=cpu"'s predicted step time. Run on an idle machine:
the preset describes the whole host (2 cores here).

    python3 bench/planner/calibrate_cpu.py [--bin build/bin]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CASES = [
    ("gpt2-124m", None, 4, 256),
    ("h512-l6", {"model_type": "gpt2", "n_embd": 512, "n_head": 8, "n_layer": 6,
                 "n_positions": 256, "vocab_size": 8192}, 8, 256),
    ("h256-l4", {"model_type": "gpt2", "n_embd": 256, "n_head": 8, "n_layer": 4,
                 "n_positions": 256, "vocab_size": 4096}, 16, 256),
]


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)}\n{r.stderr}")
    return r.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    args = ap.parse_args()
    b = lambda t: os.path.join(args.bin, t)
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"))
    print(f"{'model':<10}{'batch':>6}{'seq':>5}{'measured s':>12}{'predicted s':>13}{'pred/meas':>11}"
          f"{'GFLOP/s':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, cfg, batch, seq in CASES:
            path = os.path.join(ROOT, "examples", "models", name + ".json")
            if cfg:
                path = os.path.join(tmp, name + ".json")
                with open(path, "w") as f:
                    json.dump(cfg, f)
            mlir = os.path.join(tmp, name + ".mlir")
            run([b("llm-translate"), "--import-hf-config", path, "--batch", str(batch),
                 "--seq", str(seq), "-o", mlir])
            exec_ir = run([b("llm-opt"), mlir, "--tfm-build-train-step", "--llm-lower-to-exec"])
            prog = os.path.join(tmp, name + ".llmir")
            run([b("llm-translate"), "--export-program", "-o", prog], input=exec_ir)
            w, t = os.path.join(tmp, name + ".st"), os.path.join(tmp, name + ".npy")
            run(["/usr/bin/python3", "-m", "llmir.make_inputs", "--config", path, "--weights", w,
                 "--tokens", t, "--num-tokens", str(5 * batch * seq + 1), "--seed", "1"], env=env)
            log = os.path.join(tmp, name + ".jsonl")
            run([b("llm-run"), prog, "--weights", w, "--data", t, "--steps", "4", "--quiet",
                 "--log-json", log])
            steps = [json.loads(l)["step_ms"] / 1e3 for l in open(log) if l.strip()]
            measured = statistics.median(steps[1:])
            sim = json.loads(run([b("llm-opt"), mlir, "--llm-simulate=cluster=cpu json",
                                  "-o", "/dev/null"]))
            print(f"{name:<10}{batch:>6}{seq:>5}{measured:>12.3f}{sim['step_time_s']:>13.3f}"
                  f"{sim['step_time_s'] / measured:>11.2f}{sim['model_flops'] / measured / 1e9:>9.1f}")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
