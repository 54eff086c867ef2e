#!/usr/bin/env python3
"""LLaMA-2 7B at a long context on one node of 8 x H100 80 GB: per-rank memory
of dp, ZeRO-3, tp and context-parallel layouts (--llm-memory-report, bf16
mixed precision with flash attention: style megatron-flash), whether each
fits, and what --llm-auto-partition picks. A global batch of 8 sequences;
every layout runs micro-batches of one sequence per dp replica.

    python3 bench/memory/long_context.py [--bin build/bin] [--seq 8192]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAYOUTS = ["dp=8", "dp=8 zero=3", "tp=8", "tp=8 sp=true", "dp=4 cp=2 zero=3", "cp=4 tp=2",
           "cp=8", "cp=8 zero=3", "dp=2 cp=2 tp=2 zero=3"]
GIB = 2 ** 30


def tool(bin_dir, name, *args):
    r = subprocess.run([os.path.join(bin_dir, name), *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"error: {name} {' '.join(args)}\n{r.stderr}")
    return r.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    ap.add_argument("--seq", type=int, default=8192)
    args = ap.parse_args()
    with open(os.path.join(ROOT, "examples", "models", "llama2-7b.json")) as f:
        cfg = json.load(f)
    cfg["max_position_embeddings"] = max(cfg["max_position_embeddings"], args.seq)
    with tempfile.TemporaryDirectory() as tmp:
        path, model = os.path.join(tmp, "config.json"), os.path.join(tmp, "model.mlir")
        with open(path, "w") as f:
            json.dump(cfg, f)
        tool(args.bin, "llm-translate", "--import-hf-config", path, "--batch", "8", "--seq",
             str(args.seq), "-o", model)
        print(f"LLaMA-2 7B, batch 8 x seq {args.seq}, 8 x h100-80g, style megatron-flash "
              "(bf16 weights, f32 gradients, f32 master + AdamW state); GiB per rank")
        print(f"| {'layout':<38} | {'params':>7} | {'grads':>7} | {'optim':>7} | {'activ':>7} | "
              f"{'work':>6} | {'total':>7} | fits |")
        print(f"|{'-' * 40}|{'-' * 9}|{'-' * 9}|{'-' * 9}|{'-' * 9}|{'-' * 8}|{'-' * 9}|------|")
        for layout in LAYOUTS:
            dp = int(next((kv.split("=")[1] for kv in layout.split() if kv.startswith("dp=")), 1))
            full = f"{layout} microbatches={8 // dp}"
            out = json.loads(tool(args.bin, "llm-opt", model,
                                  f"--llm-memory-report=layout={full.replace(' ', ',')} "
                                  "style=megatron-flash gpu=h100-80g json", "-o", os.devnull))
            r = out["ranks"][0]
            print(f"| {full:<38} | {r['param_bytes'] / GIB:7.2f} | {r['grad_bytes'] / GIB:7.2f} | "
                  f"{r['optimizer_bytes'] / GIB:7.2f} | {r['activation_bytes'] / GIB:7.2f} | "
                  f"{r['working_bytes'] / GIB:6.2f} | {r['total_bytes'] / GIB:7.2f} | "
                  f"{'yes' if out['fits'] else 'no':<4} |")
        print()
        print(tool(args.bin, "llm-opt", model, "--llm-auto-partition=cluster=nodes=1,gpu=h100-80g "
                   "apply=false top-k=3", "-o", os.devnull))
    return 0


if __name__ == "__main__":
    sys.exit(main())
