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
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

REPO = Path(__file__).resolve().parent.parent
LOSS_RTOL = 1e-4


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="gpt2-124m",
                   help="a name in examples/models/ or a path to an HF config.json (default gpt2-124m)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--steps", type=int, default=8, help="steps per side, warm-up included (default 8)")
    p.add_argument("--warmup", type=int, default=2, help="leading steps left out of the median (default 2)")
    p.add_argument("--rounds", type=int, default=1,
                   help="alternate the two sides this many times (steadier on a shared machine; default 1)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for both sides (default: all cores)")
    p.add_argument("--workdir", help="where the program, weights and tokens are cached (default: a temp dir)")
    p.add_argument("--bin-dir", default=str(REPO / "build" / "bin"), help="directory of llm-translate/llm-opt/llm-run")
    p.add_argument("--openblas-coretype", metavar="NAME",
                   help="OPENBLAS_CORETYPE for both sides (both use the system OpenBLAS), e.g. SKYLAKEX on an "
                        "AVX-512 CPU that the installed OpenBLAS does not recognise (it then falls back to Haswell "
                        "kernels; OPENBLAS_VERBOSE=2 prints the choice)")
    p.add_argument("--skip-pytorch", action="store_true", help="time llm-run only")
    return p


def _config_path(model: str) -> Path:
    p = Path(model)
    if p.suffix == ".json" or p.exists():
        return p.resolve()
    return REPO / "examples" / "models" / f"{model}.json"


def _thread_env(threads: int, coretype: str = None) -> Dict[str, str]:
    if coretype:
        # Before torch (and its libopenblas) is imported in this process, too.
        os.environ["OPENBLAS_CORETYPE"] = coretype
    env = dict(os.environ)
    env.update({
        "OMP_WAIT_POLICY": "PASSIVE",  # idle OpenMP threads must not spin while OpenBLAS works
        "OMP_NUM_THREADS": str(threads),
        "OPENBLAS_NUM_THREADS": str(threads),
        "PYTHONPATH": str(REPO / "python") + os.pathsep + env.get("PYTHONPATH", ""),
    })
    return env


def _prepare(args, cfg_path: Path, work: Path, env: Dict[str, str]) -> Tuple[Path, Path, Path]:
    """Compiles the program (every run: cheap) and writes weights/tokens once."""
    bin_dir = Path(args.bin_dir)
    stem = f"{cfg_path.stem}-b{args.batch}-s{args.seq}"
    program = work / f"{stem}.llmir"
    translate = subprocess.Popen(
        [str(bin_dir / "llm-translate"), "--import-hf-config", str(cfg_path), "--batch", str(args.batch),
         "--seq", str(args.seq)], stdout=subprocess.PIPE)
    lower = subprocess.Popen([str(bin_dir / "llm-opt"), "--llm-lower-to-exec"], stdin=translate.stdout,
                             stdout=subprocess.PIPE)
    translate.stdout.close()
    export = subprocess.run([str(bin_dir / "llm-translate"), "--export-program", "-o", str(program)],
                            stdin=lower.stdout)
    lower.stdout.close()
    if translate.wait() or lower.wait() or export.returncode:
        sys.exit("error: compiling the model failed")

    weights = work / f"{cfg_path.stem}.safetensors"
    num_tokens = max(100_000, args.steps * args.batch * args.seq + 1)
    tokens = work / f"{cfg_path.stem}-tokens-{num_tokens}.npy"
    if not weights.exists() or not tokens.exists():
        subprocess.run([sys.executable, "-m", "llmir.make_inputs", "--config", str(cfg_path), "--weights",
                        str(weights), "--tokens", str(tokens), "--num-tokens", str(num_tokens), "--seed", "0"],
                       env=env, check=True)
    return program, weights, tokens


def _run_ours(args, program: Path, weights: Path, tokens: Path, work: Path,
              env: Dict[str, str]) -> Tuple[List[float], List[float]]:
    log = work / "llm-run.jsonl"
    subprocess.run([str(Path(args.bin_dir) / "llm-run"), str(program), "--weights", str(weights), "--data",
                    str(tokens), "--steps", str(args.steps), "--eval", "--quiet", "--log-json", str(log)],
                   env=env, check=True)
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [r["step_ms"] for r in rows], [r["loss"] for r in rows]


class _PyTorchPeer:
    """The reference model on the benchmark's weights, timed in this process."""

    def __init__(self, args, cfg_path: Path, weights: Path, tokens: Path):
        # Read when torch's OpenMP runtime and OpenBLAS start: set before the import. torch.set_num_threads
        # does not reach OpenBLAS's own thread pool, which torch's GEMMs run on.
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
        sys.path.insert(0, str(REPO / "python"))
        import numpy as np
        import torch

        from llmir import config, reference

        torch.set_num_threads(args.threads)
        self.args, self.torch, self.reference = args, torch, reference
        self.cfg = config.load_config(str(cfg_path))
        self.params = reference.load_params(self.cfg, str(weights))
        self.tokens = np.load(str(tokens))

    def run(self) -> Tuple[List[float], List[float]]:
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
    args = _parser().parse_args(argv)
    if args.rounds < 1:
        sys.exit("error: --rounds must be >= 1")
    if args.steps - args.warmup < 5:
        sys.exit("error: need at least 5 timed steps (--steps - --warmup >= 5)")
    cfg_path = _config_path(args.model)
    if not cfg_path.exists():
        sys.exit(f"error: no model config {cfg_path}")
    env = _thread_env(args.threads, args.openblas_coretype)
    ours_ms: List[float] = []
    peer_ms: List[float] = []
    with tempfile.TemporaryDirectory(prefix="llmir-bench-") as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        program, weights, tokens = _prepare(args, cfg_path, work, env)
        peer = None if args.skip_pytorch else _PyTorchPeer(args, cfg_path, weights, tokens)
        # Rounds alternate the two sides so load from other processes hits both alike.
        for r in range(args.rounds):
            times, ours_loss = _run_ours(args, program, weights, tokens, work, env)
            ours_ms += times[args.warmup:]
            print(f"round {r}: ours    step ms: {' '.join(f'{t:.0f}' for t in times)}")
            if peer:
                peer_times, peer_loss = peer.run()
                peer_ms += peer_times[args.warmup:]
                ratio = statistics.median(peer_times[args.warmup:]) / statistics.median(times[args.warmup:])
                print(f"round {r}: pytorch step ms: {' '.join(f'{t:.0f}' for t in peer_times)}  "
                      f"(this round's ratio {ratio:.2f})")

    tokens_per_step = args.batch * args.seq
    ours = statistics.median(ours_ms)
    coretype = f", OPENBLAS_CORETYPE={args.openblas_coretype}" if args.openblas_coretype else ""
    print(f"threads {args.threads}{coretype}; median step time of {len(ours_ms)} timed steps per side "
          f"({args.rounds} round(s) of {args.steps} steps, the first {args.warmup} of each left out)")
    ok = True
    if peer_ms:
        peer = statistics.median(peer_ms)
        worst = max(abs(a - b) / abs(b) for a, b in zip(ours_loss, peer_loss))
        ok = worst <= LOSS_RTOL
        print(f"loss step 0: ours {ours_loss[0]:.7f}  pytorch {peer_loss[0]:.7f}  "
              f"(max rel diff over {len(peer_loss)} steps {worst:.2e}, tol {LOSS_RTOL:g}: {'ok' if ok else 'MISMATCH'})")
    print()
    header = f"{'model':<12} {'shape':<10} {'ours tok/s':>11} {'pytorch tok/s':>14} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    shape = f"{args.batch}x{args.seq}"
    ours_tps = tokens_per_step / (ours / 1e3)
    if peer_ms:
        peer_tps = tokens_per_step / (peer / 1e3)
        print(f"{cfg_path.stem:<12} {shape:<10} {ours_tps:>11.0f} {peer_tps:>14.0f} {ours_tps / peer_tps:>6.2f}")
    else:
        print(f"{cfg_path.stem:<12} {shape:<10} {ours_tps:>11.0f} {'-':>14} {'-':>6}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
