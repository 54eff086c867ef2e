#!/usr/bin/env python3
"""Mixed-precision training step on CPU: our bf16 program vs our f32 program vs PyTorch CPU autocast bf16.

    /usr/bin/python3 bench/train_cpu_bf16.py [--model gpt2-124m] [--batch 4] [--seq 256] [--steps 8] [--threads N]

Compiles the model's training step twice (f32, and with --llm-mixed-precision compute=bf16), runs both with llm-run
on the same weights and windows, and times the peer: `llmir.reference`'s model under
`torch.autocast("cpu", dtype=torch.bfloat16)` (f32 parameters, bf16 matmuls) + loss.backward() +
torch.optim.AdamW(betas=(0.9, 0.95), eps=1e-8) with the same lr and weight decay (OMP_WAIT_POLICY=PASSIVE, the same
threads). Prints the median step time of each side, tokens/s and the ratios, and each side's losses (the three runs
round differently, so they agree to ~1e-2, not bit for bit). Never fails on time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import List

import _common as common


def _llm_run(args, program: Path, weights: Path, tokens: Path, work: Path, env, tag: str) -> common.Run:
    log = work / f"llm-run-{tag}.jsonl"
    cmd = common.llm_run_cmd(args, program, weights, tokens, log, "--lr", repr(args.lr), "--weight-decay",
                             repr(args.weight_decay))
    import subprocess

    if subprocess.run(cmd, env=env).returncode:
        sys.exit(f"error: llm-run ({tag}) failed")
    return common.read_step_log(log)


class _AutocastPeer(common.TorchPeer):
    """llmir.reference's model, forward under CPU autocast bf16, AdamW on f32 parameters."""

    def run(self) -> common.Run:
        torch, ref, a = self.torch, self.reference, self.args
        p = ref.to_torch_params(self.cfg, self.params, requires_grad=True)
        opt = torch.optim.AdamW(ref.param_groups(p, a.weight_decay), lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
        times: List[float] = []
        losses: List[float] = []
        for i in range(a.steps):
            t0 = time.perf_counter()
            x, y = ref.batch_for_step(self.tokens, i, a.batch, a.seq)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = ref.loss(self.cfg, p, x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            times.append((time.perf_counter() - t0) * 1e3)
        return times, losses


def main(argv=None) -> int:
    p = common.add_common_args(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--weight-decay", type=float, default=0.1)
    args = p.parse_args(argv)
    cfg_path = common.check_args(args)
    env = common.thread_env(args.threads, args.openblas_coretype)
    train = ["--tfm-build-train-step", "--llm-lower-to-exec"]
    with tempfile.TemporaryDirectory(prefix="llmir-bench-") as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        f32_prog, _ = common.compile_program(args, cfg_path, work, train, "train")
        bf16_prog, _ = common.compile_program(args, cfg_path, work, ["--llm-mixed-precision"] + train, "train-bf16")
        weights, tokens = common.make_inputs(args, cfg_path, work, env)
        rows = {}
        for r in range(args.rounds):
            for tag, prog in (("bf16", bf16_prog), ("f32", f32_prog)):
                times, losses = _llm_run(args, prog, weights, tokens, work, env, tag)
                rows.setdefault(tag, ([], losses))[0].extend(times[args.warmup:])
                rows[tag] = (rows[tag][0], losses)
            if not args.skip_pytorch:
                times, losses = _AutocastPeer(args, cfg_path, weights, tokens).run()
                rows.setdefault("torch", ([], losses))[0].extend(times[args.warmup:])
                rows["torch"] = (rows["torch"][0], losses)
        print()
        common.print_settings(args, len(rows["bf16"][0]))
        tokens_per_step = args.batch * args.seq
        med = {k: statistics.median(v[0]) for k, v in rows.items()}
        header = f"{'side':<34} {'ms/step':>9} {'tok/s':>9} {'side ms / ours bf16 ms':>23}"
        print(header)
        print("-" * len(header))
        names = {"bf16": "ours bf16 (--llm-mixed-precision)", "f32": "ours f32",
                 "torch": "PyTorch autocast bf16 (CPU)"}
        for k in ("bf16", "f32", "torch"):
            if k in med:
                print(f"{names[k]:<34} {med[k]:>9.1f} {tokens_per_step / (med[k] / 1e3):>9.0f} "
                      f"{med[k] / med['bf16']:>23.2f}")
        print()
        print("losses per step: " + "  ".join(f"{k}: " + " ".join(f"{x:.4f}" for x in rows[k][1]) for k in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
