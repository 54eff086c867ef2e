#!/usr/bin/env python3
"""Forward-only (eval) throughput on CPU: llm-run vs the PyTorch reference, same weights, windows and threads.

    /usr/bin/python3 bench/forward_cpu.py [--model gpt2-124m] [--batch 4] [--seq 256] [--steps 8] [--threads N]

Compiles the model with llm-translate/llm-opt, writes random weights and tokens once (cached in --workdir), runs
`llm-run --eval` and times `llmir.reference.loss` under torch.no_grad() on the same windows.  Both sides get
OMP_WAIT_POLICY=PASSIVE and the same thread count (OMP_NUM_THREADS + OPENBLAS_NUM_THREADS for llm-run,
torch.set_num_threads + OPENBLAS_NUM_THREADS for PyTorch).  Reports the median step time of the steps after the
warm-up ones (pooled over --rounds, which alternate the sides); checks that both sides' losses agree (exit 1 if not).
Prints a table; never fails on time (STYLE.md "Benchmarks").  See bench/README.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict

import _common as common


def _run_ours(args, program: Path, weights: Path, tokens: Path, work: Path, env: Dict[str, str]) -> common.Run:
    log = work / "llm-run.jsonl"
    subprocess.run(common.llm_run_cmd(args, program, weights, tokens, log, "--eval"), env=env, check=True)
    return common.read_step_log(log)


class _PyTorchPeer(common.TorchPeer):
    """The reference model's loss under torch.no_grad(), one window per step."""

    def run(self) -> common.Run:
        times, losses = [], []
        with self.torch.no_grad():
            for step in range(self.args.steps):
                x, y = self.reference.batch_for_step(self.tokens, step, self.args.batch, self.args.seq)
                t0 = time.perf_counter()
                loss = self.reference.loss(self.cfg, self.params, x, y)
                times.append((time.perf_counter() - t0) * 1e3)
                losses.append(float(loss))
        return times, losses


def main(argv=None) -> int:
    args = common.add_common_args(argparse.ArgumentParser(description=__doc__.split("\n\n")[0])).parse_args(argv)
    cfg_path = common.check_args(args)
    env = common.thread_env(args.threads, args.openblas_coretype)
    with tempfile.TemporaryDirectory(prefix="llmir-bench-") as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        program, _ = common.compile_program(args, cfg_path, work, ["--llm-lower-to-exec"], "eval")
        weights, tokens = common.make_inputs(args, cfg_path, work, env)
        peer = None if args.skip_pytorch else _PyTorchPeer(args, cfg_path, weights, tokens)
        ours_ms, peer_ms, ours_loss, peer_loss = common.run_rounds(
            args, lambda: _run_ours(args, program, weights, tokens, work, env), peer.run if peer else None)

    common.print_settings(args, len(ours_ms))
    ok = common.check_losses(ours_loss, peer_loss) if peer_ms else True
    print()
    common.print_throughput(args, cfg_path, ours_ms, peer_ms)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
