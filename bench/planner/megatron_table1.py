#!/usr/bin/env python3
"""Cost model and planner vs published large-scale training results.

Rows: the GPT models of Megatron-LM's SC'21 paper, Table 1 (Narayanan et al.,
"Efficient Large-Scale Language Model Training on GPU Clusters Using
Megatron-LM", SC'21, arXiv:2104.04473: 1.7B ... 1T parameters on 32 ... 3072
A100-80GB GPUs of Selene, 8 per DGX node with 8 x 200 Gb/s HDR InfiniBand;
vocabulary 51,200, sequence 2048; teraFLOP/s per GPU counted with the
paper's formula 96·B·s·l·h²·(1 + s/6h + V/16lh), i.e. including the
activation-recompute forward), and GPT-3 175B on H100 (Megatron-Core's
published GPT-3 175B figure: tp=4, pp=8, 390 TFLOP/s per GPU in bf16, model
FLOPs without recompute).

For each row: the cost model's TFLOP/s for the published layout (same FLOP
convention as the publication) and the ratio to the published figure, then
what --llm-auto-partition chooses on the same cluster (planner layout,
predicted TFLOP/s, the published layout's predicted step time vs the
planner's) and the search time.

Assumptions for the published layouts (Table 1 gives tp, pp, GPUs and batch):
dp = GPUs / (tp·pp), micro-batch size 1, non-interleaved 1F1B, full
activation recompute (the paper's Table 1 runs recompute: its FLOP formula
counts 4 passes), no sequence parallelism (2021), no ZeRO, gradient
all-reduce after the backward (not overlapped), attention without flash
(style=megatron: bf16 mixed precision, dropout, stored attention scores).

    python3 bench/planner/megatron_table1.py [--bin build/bin] [--rows 1T]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# name, heads, hidden, layers, tp, pp, gpus, batch, published TFLOP/s per GPU
MEGATRON_TABLE1 = [
    ("1.7B", 24, 2304, 24, 1, 1, 32, 512, 137),
    ("3.6B", 32, 3072, 30, 2, 1, 64, 512, 138),
    ("7.5B", 32, 4096, 36, 4, 1, 128, 512, 142),
    ("18B", 48, 6144, 40, 8, 1, 256, 1024, 135),
    ("39B", 64, 8192, 48, 8, 2, 512, 1536, 138),
    ("76B", 80, 10240, 60, 8, 4, 1024, 1792, 140),
    ("146B", 96, 12288, 80, 8, 8, 1536, 2304, 148),
    ("310B", 128, 16384, 96, 8, 16, 1920, 2160, 155),
    ("530B", 128, 20480, 105, 8, 35, 2520, 2520, 163),
    ("1T", 160, 25600, 128, 8, 64, 3072, 3072, 163),
]


def hf_config(heads, hidden, layers, vocab=51200, seq=2048):
    return {"model_type": "gpt2", "n_embd": hidden, "n_head": heads, "n_layer": layers,
            "n_positions": seq, "n_ctx": seq, "vocab_size": vocab,
            "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new"}


def megatron_flops(batch, seq, layers, hidden, vocab):
    # Narayanan et al. eq. (3): with activation recompute.
    return 96 * batch * seq * layers * hidden**2 * (1 + seq / (6 * hidden) + vocab / (16 * layers * hidden))


def run(cmd, stdin=None):
    r = subprocess.run(cmd, input=stdin, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)}\n{r.stderr}")
    return r.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    ap.add_argument("--rows", default="", help="comma-separated row names (default all)")
    ap.add_argument("--no-h100", action="store_true")
    args = ap.parse_args()
    translate = os.path.join(args.bin, "llm-translate")
    opt = os.path.join(args.bin, "llm-opt")
    wanted = set(args.rows.split(",")) if args.rows else None

    rows = []
    for name, heads, hidden, layers, tp, pp, gpus, batch, published in MEGATRON_TABLE1:
        rows.append(dict(name=name, heads=heads, hidden=hidden, layers=layers, tp=tp, pp=pp,
                         gpus=gpus, batch=batch, published=published, gpu="a100-80g",
                         inter="ib-200g", vocab=51200, style="megatron", recompute="full",
                         flops="megatron", dp_overlap=0.0, seq=2048, vpp=1, schedule="1f1b"))
    if not args.no_h100:
        # GPT-3 175B on H100 (Megatron-Core performance summary): tp=4, pp=8,
        # 390 TFLOP/s per GPU (model FLOPs), bf16, flash attention, selective
        # recompute, gradient reduce overlapped; 512 GPUs, batch 2048 assumed.
        rows.append(dict(name="175B-H100", heads=96, hidden=12288, layers=96, tp=4, pp=8,
                         gpus=512, batch=2048, published=390, gpu="h100-80g", inter="ib-400g",
                         vocab=51200, style="megatron-flash", recompute="selective",
                         flops="model", dp_overlap=1.0, seq=2048, vpp=1, schedule="1f1b"))

    print(f"{'model':<10}{'GPUs':>6}{'published layout':>24}{'pub TF/s':>10}{'pred TF/s':>10}"
          f"{'ratio':>7}  {'planner layout':<44}{'pred TF/s':>10}{'speedup':>8}{'search':>8}")
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in rows:
            if wanted and r["name"] not in wanted:
                continue
            cfg = os.path.join(tmp, r["name"] + ".json")
            with open(cfg, "w") as f:
                json.dump(hf_config(r["heads"], r["hidden"], r["layers"], r["vocab"], r["seq"]), f)
            model = run([translate, "--import-hf-config", cfg, "--batch", str(r["batch"]),
                         "--seq", str(r["seq"])])
            dp = r["gpus"] // (r["tp"] * r["pp"])
            micro = r["batch"] // dp  # micro-batch size 1
            layout = (f"dp={dp},tp={r['tp']},pp={r['pp']},vpp={r['vpp']},microbatches={micro},"
                      f"schedule={r['schedule']},recompute={r['recompute']}")
            nodes = r["gpus"] // 8
            cluster = f"nodes={nodes},gpus-per-node=8,gpu={r['gpu']},inter={r['inter']}"
            sim = json.loads(run([opt, f"--llm-simulate=cluster={cluster} layout={layout} "
                                       f"style={r['style']} dp-overlap={r['dp_overlap']} json",
                                  "-o", "/dev/null"], stdin=model))
            if r["flops"] == "megatron":
                flops = megatron_flops(r["batch"], r["seq"], r["layers"], r["hidden"], r["vocab"])
            else:
                flops = sim["model_flops"]
            pred = flops / sim["step_time_s"] / r["gpus"] / 1e12
            ratio = pred / r["published"]
            ratios.append(ratio)
            t0 = time.time()
            plan = json.loads(run([opt, f"--llm-auto-partition=cluster={cluster} style={r['style']} "
                                        f"apply=false json top-k=1",
                                   "-o", "/dev/null"], stdin=model))
            wall = time.time() - t0
            best = plan["top"][0]
            bflops = flops / best["step_time_s"] / r["gpus"] / 1e12
            blayout = re.sub(r"vpp=1 |sp=false |zero=0|schedule=|recompute=|microbatches=", "",
                             best["layout"]).strip()
            print(f"{r['name']:<10}{r['gpus']:>6}{'tp=%d pp=%d dp=%d' % (r['tp'], r['pp'], dp):>24}"
                  f"{r['published']:>10.0f}{pred:>10.1f}{ratio:>7.2f}  {blayout:<44}{bflops:>10.1f}"
                  f"{sim['step_time_s'] / best['step_time_s']:>8.2f}{wall:>7.1f}s")
            sys.stdout.flush()
    if ratios:
        worst = max(abs(x - 1) for x in ratios)
        print(f"published-layout prediction / published: min {min(ratios):.2f}, max {max(ratios):.2f} "
              f"(largest deviation {100 * worst:.1f}%, goal <= 15%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
