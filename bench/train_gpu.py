#!/usr/bin/env python3
"""Training-step throughput and MFU on one GPU: `llm-run --backend cuda` beside PyTorch eager and torch.compile,
and the GEMM throughput of our cuBLASLt path beside torch.matmul on the transformer's shapes.

    /usr/bin/python3 bench/train_gpu.py [--model gpt2-124m] [--batch 8] [--seq 1024] [--steps 12] [--warmup 3]
                                        [--tf32] [--torch-dtype f32|bf16] [--peak-tflops X] [--skip-train]

FLOP convention (as `llm-opt --tfm-model-stats`, README "model statistics"): per step
    6 * N_mm * T + 12 * L * S * d * T
with N_mm the weights applied by matmuls (12 d^2 per layer + the LM head V * d; embedding lookups excluded), T the
tokens per step (batch * seq), S the sequence length, L the layers, d the width; the causal mask is not discounted
and recompute is not counted.  MFU = those FLOPs / step time / the GPU's dense peak for the math mode used (fp32
CUDA cores, TF32 or bf16 tensor cores; table below, or --peak-tflops).

Ours runs the compiled training step (--tfm-build-train-step: forward, backward, AdamW; f32 program) on the CUDA
backend; PyTorch runs a GPT-2 of the same config (nanoGPT-style modules, F.scaled_dot_product_attention with
is_causal, fused AdamW) on the same tokens, eagerly and under torch.compile.  Our fp32 GEMMs use TF32 only with
--tf32 (LLMIR_CUDA_TF32=1); PyTorch's allow_tf32 follows the same flag.  --torch-dtype bf16 adds autocast to
PyTorch's side only (our backend has no bf16 path yet), so compare such rows with care.

Exits 0 with a message when no GPU (or no torch with CUDA) is present.  Never fails on time (STYLE.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402

# Dense peak TFLOP/s by (device name substring, math mode); the first match wins.
PEAKS: List[Tuple[str, Dict[str, float]]] = [
    ("H200", {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4}),
    ("H100 PCIe", {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0}),
    ("H100", {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4}),  # SXM
    ("A100", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0}),
    ("L40S", {"fp32": 91.6, "tf32": 183.0, "bf16": 362.0}),
]


def model_flops(cfg: dict, batch: int, seq: int) -> float:
    layers = cfg.get("n_layer", cfg.get("num_hidden_layers"))
    d = cfg.get("n_embd", cfg.get("hidden_size"))
    vocab = cfg["vocab_size"]
    n_mm = layers * 12 * d * d + vocab * d
    tokens = batch * seq
    return 6.0 * n_mm * tokens + 12.0 * layers * seq * d * tokens


def peak_tflops(name: str, mode: str, override: Optional[float]) -> Optional[float]:
    if override:
        return override
    for key, peaks in PEAKS:
        if key in name:
            return peaks[mode]
    return None


# ---- PyTorch peer --------------------------------------------------------------------------------------------

def build_torch_gpt2(torch, cfg: dict, device):
    nn, F = torch.nn, torch.nn.functional
    d, heads, layers = cfg["n_embd"], cfg["n_head"], cfg["n_layer"]
    vocab, ctx = cfg["vocab_size"], cfg.get("n_positions", 1024)
    eps = cfg.get("layer_norm_epsilon", 1e-5)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(d, eps=eps)
            self.c_attn = nn.Linear(d, 3 * d)
            self.c_proj = nn.Linear(d, d)
            self.ln_2 = nn.LayerNorm(d, eps=eps)
            self.c_fc = nn.Linear(d, 4 * d)
            self.c_fc_proj = nn.Linear(4 * d, d)

        def forward(self, x):
            b, s, _ = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(d, dim=2)
            q, k, v = (t.view(b, s, heads, d // heads).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.c_proj(y.transpose(1, 2).reshape(b, s, d))
            return x + self.c_fc_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(vocab, d)
            self.wpe = nn.Embedding(ctx, d)
            self.h = nn.ModuleList(Block() for _ in range(layers))
            self.ln_f = nn.LayerNorm(d, eps=eps)

        def forward(self, idx, targets):
            pos = torch.arange(idx.shape[1], device=idx.device)
            x = self.wte(idx) + self.wpe(pos)
            for block in self.h:
                x = block(x)
            logits = self.ln_f(x) @ self.wte.weight.t()  # tied LM head, as GPT-2
            return F.cross_entropy(logits.view(-1, vocab).float(), targets.view(-1))

    return GPT().to(device)


def time_torch(args, torch, cfg: dict, tokens, compiled: bool) -> List[float]:
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = build_torch_gpt2(torch, cfg, device)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)
    fwd = torch.compile(model) if compiled else model
    use_bf16 = args.torch_dtype == "bf16"
    times: List[float] = []
    n = args.batch * args.seq
    for step in range(args.steps):
        start = (step * n) % (len(tokens) - n - 1)
        window = torch.from_numpy(tokens[start:start + n + 1].astype("int64")).to(device)
        idx, tgt = window[:-1].view(args.batch, args.seq), window[1:].view(args.batch, args.seq)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
            loss = fwd(idx, tgt)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    del model, opt, fwd
    torch.cuda.empty_cache()
    return times


# ---- GEMMs ------------------------------------------------------------------------------------------------------

def gemm_shapes(cfg: dict, batch: int, seq: int) -> List[Tuple[str, int, int, int, int, int]]:
    """(what, M, N, K, transA, transB) of the training step's GEMMs (row-major, C[M,N] = op(A) op(B))."""
    d, vocab, t = cfg["n_embd"], cfg["vocab_size"], batch * seq
    shapes = []
    for what, k, n in (("qkv", d, 3 * d), ("attn proj", d, d), ("fc", d, 4 * d), ("fc proj", 4 * d, d)):
        shapes += [(f"{what} fwd", t, n, k, 0, 0), (f"{what} dX", t, k, n, 0, 1), (f"{what} dW", k, n, t, 1, 0)]
    shapes += [("lm head fwd", t, vocab, d, 0, 1), ("lm head dX", t, d, vocab, 0, 0),
               ("lm head dW", vocab, d, t, 1, 0)]
    return shapes


def torch_gemm_ms(torch, m, n, k, ta, tb, iters: int) -> float:
    a = torch.randn((k, m) if ta else (m, k), device="cuda")
    b = torch.randn((n, k) if tb else (k, n), device="cuda")
    a_op, b_op = (a.t() if ta else a), (b.t() if tb else b)
    for _ in range(5):
        torch.matmul(a_op, b_op)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(iters):
        torch.matmul(a_op, b_op)
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


def gemm_table(args, torch, cfg: dict, bench_bin: Path) -> None:
    shapes = gemm_shapes(cfg, args.batch, args.seq)
    cmd = [str(bench_bin), "--iters", str(args.gemm_iters)] + (["--tf32"] if args.tf32 else [])
    cmd += [f"{m},{n},{k},{ta},{tb}" for _, m, n, k, ta, tb in shapes]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        print(f"GEMM bench failed: {out.stderr.strip()}")
        return
    ours = [line.split() for line in out.stdout.splitlines() if line.startswith("gemm ")]
    header = f"{'GEMM':<14} {'M x N x K':<22} {'op':<4} {'ours TF/s':>10} {'torch TF/s':>11} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    ratios = []
    for (what, m, n, k, ta, tb), row in zip(shapes, ours):
        ours_tf = float(row[7])
        torch_tf = 2.0 * m * n * k / (torch_gemm_ms(torch, m, n, k, ta, tb, args.gemm_iters) * 1e-3) / 1e12
        ratios.append(ours_tf / torch_tf)
        op = ("T" if ta else "N") + ("T" if tb else "N")
        print(f"{what:<14} {f'{m}x{n}x{k}':<22} {op:<4} {ours_tf:>10.1f} {torch_tf:>11.1f} {ours_tf / torch_tf:>6.2f}")
    if ratios:
        geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        print(f"geometric mean ours/torch: {geo:.2f}")


# ---- main ---------------------------------------------------------------------------------------------------------

def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="gpt2-124m")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--steps", type=int, default=12, help="steps per side, warm-up included")
    p.add_argument("--warmup", type=int, default=3, help="leading steps left out of the median")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--tf32", action="store_true", help="TF32 tensor cores for fp32 GEMMs on both sides")
    p.add_argument("--torch-dtype", choices=["f32", "bf16"], default="f32")
    p.add_argument("--peak-tflops", type=float, help="override the dense peak used for MFU")
    p.add_argument("--gemm-iters", type=int, default=20)
    p.add_argument("--skip-train", action="store_true", help="GEMM table only")
    p.add_argument("--skip-compile", action="store_true", help="leave out torch.compile")
    p.add_argument("--workdir", help="where the program, weights and tokens are cached (default: a temp dir)")
    p.add_argument("--bin-dir", default=str(common.REPO / "build" / "bin"),
                   help="llm-translate/llm-opt (compiler build) and llm-run built with CUDA")
    p.add_argument("--cuda-bin-dir", help="llm-run / llmir-cuda-gemm-bench directory if not --bin-dir")
    args = p.parse_args()

    try:
        import numpy as np
        import torch
    except ImportError as e:
        print(f"bench/train_gpu.py: needs torch and numpy ({e}): nothing measured")
        return 0
    if not torch.cuda.is_available():
        print("bench/train_gpu.py: no CUDA GPU available: nothing measured (run it on a GPU machine)")
        return 0

    cfg_path = common.config_path(args.model)
    cfg = json.loads(cfg_path.read_text())
    cuda_bin = Path(args.cuda_bin_dir or args.bin_dir)
    name = torch.cuda.get_device_name(0)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    print(f"GPU: {name}; torch {torch.__version__} (CUDA {torch.version.cuda}); "
          f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(f"model {cfg_path.stem}, batch {args.batch} x seq {args.seq}; fp32 GEMMs {'TF32' if args.tf32 else 'full fp32'}"
          f"; torch dtype {args.torch_dtype}")

    gemm_bin = cuda_bin / "llmir-cuda-gemm-bench"
    if gemm_bin.exists():
        gemm_table(args, torch, cfg, gemm_bin)
    else:
        print(f"no {gemm_bin}: GEMM table skipped (build the runtime with CUDA)")
    if args.skip_train:
        return 0

    flops = model_flops(cfg, args.batch, args.seq)
    tokens_per_step = args.batch * args.seq
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="llmir-gpu-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    env = common.thread_env(os.cpu_count() or 1)
    rows = []

    # Ours.
    ours_ms: Optional[List[float]] = None
    if (Path(args.bin_dir) / "llm-opt").exists():
        program, _ = common.compile_program(args, cfg_path, work, ["--tfm-build-train-step", "--llm-lower-to-exec"],
                                            "train")
        weights, tokens_file = common.make_inputs(args, cfg_path, work, env)
        log = work / "ours-gpu.jsonl"
        if log.exists():
            log.unlink()
        run_env = dict(env, LLMIR_CUDA_TF32="1" if args.tf32 else "0")
        cmd = [str(cuda_bin / "llm-run"), str(program), "--weights", str(weights), "--data", str(tokens_file),
               "--steps", str(args.steps), "--quiet", "--log-json", str(log), "--lr", repr(args.lr),
               "--weight-decay", repr(args.weight_decay), "--backend", "cuda"]
        run = subprocess.run(cmd, env=run_env, capture_output=True, text=True)
        if run.returncode:
            print(f"ours failed: {run.stderr.strip()[-2000:]}")
        else:
            ours_ms, _ = common.read_step_log(log)
            rows.append(("llm-run --backend cuda", ours_ms, "tf32" if args.tf32 else "fp32"))
        tokens = np.load(str(tokens_file))
    else:
        print(f"no llm-opt in {args.bin_dir}: ours skipped (needs the compiler build to make the program)")
        tokens = np.random.default_rng(0).integers(0, cfg["vocab_size"], size=max(100_000, args.steps *
                                                                                   tokens_per_step + 1))

    torch_mode = "bf16" if args.torch_dtype == "bf16" else ("tf32" if args.tf32 else "fp32")
    rows.append((f"PyTorch eager ({args.torch_dtype})", time_torch(args, torch, cfg, tokens, compiled=False),
                 torch_mode))
    if not args.skip_compile:
        rows.append((f"torch.compile ({args.torch_dtype})", time_torch(args, torch, cfg, tokens, compiled=True),
                     torch_mode))

    print(f"\nmedian of steps {args.warmup}..{args.steps - 1}; {flops / 1e12:.2f} TFLOP per step "
          f"(6*N_mm*T + 12*L*S*d*T); MFU against the dense peak of {name} for each row's math mode")
    header = (f"{'side':<28} {'ms/step':>9} {'tokens/s':>10} {'TFLOP/s':>8} {'mode':>5} {'peak':>6} {'MFU':>6} "
              f"{'vs eager':>9}")
    print(header)
    print("-" * len(header))
    eager_ms = None
    for label, times, _ in rows:
        if label.startswith("PyTorch eager"):
            eager_ms = statistics.median(times[args.warmup:])
    for label, times, mode in rows:
        ms = statistics.median(times[args.warmup:])
        tflops = flops / (ms * 1e-3) / 1e12
        peak = peak_tflops(name, mode, args.peak_tflops)
        mfu = f"{100 * tflops / peak:.1f}%" if peak else "-"
        ratio = f"{eager_ms / ms:.2f}" if eager_ms else "-"
        print(f"{label:<28} {ms:>9.1f} {tokens_per_step / (ms * 1e-3):>10.0f} {tflops:>8.1f} {mode:>5} "
              f"{peak or '?':>6} {mfu:>6} {ratio:>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
