"""Helpers shared by the CPU benchmarks (forward_cpu.py, train_cpu.py): options, thread settings, compiling the
model, the cached weights/tokens, llm-run's step log, the in-process PyTorch peer and the result table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parent.parent
LOSS_RTOL = 1e-4

# (step times in ms, losses) of one run of one side.
Run = Tuple[List[float], List[float]]


def add_common_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
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


def config_path(model: str) -> Path:
    p = Path(model)
    if p.suffix == ".json" or p.exists():
        return p.resolve()
    return REPO / "examples" / "models" / f"{model}.json"


def check_args(args) -> Path:
    """Validates the shared options; returns the model's config path."""
    if args.rounds < 1:
        sys.exit("error: --rounds must be >= 1")
    if args.steps - args.warmup < 5:
        sys.exit("error: need at least 5 timed steps (--steps - --warmup >= 5)")
    cfg_path = config_path(args.model)
    if not cfg_path.exists():
        sys.exit(f"error: no model config {cfg_path}")
    return cfg_path


def thread_env(threads: int, coretype: Optional[str] = None) -> Dict[str, str]:
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


def compile_program(args, cfg_path: Path, work: Path, opt_passes: Sequence[str], tag: str) -> Tuple[Path, Path]:
    """llm-translate --import-hf-config | llm-opt PASSES -> TAG.exec.mlir -> TAG.llmir (every run: it is cheap).

    Returns (program, exec_mlir); the exec.mlir's first op carries the static memory plan."""
    bin_dir = Path(args.bin_dir)
    stem = f"{cfg_path.stem}-b{args.batch}-s{args.seq}-{tag}"
    exec_mlir, program = work / f"{stem}.exec.mlir", work / f"{stem}.llmir"
    translate = subprocess.Popen(
        [str(bin_dir / "llm-translate"), "--import-hf-config", str(cfg_path), "--batch", str(args.batch),
         "--seq", str(args.seq)], stdout=subprocess.PIPE)
    lower = subprocess.run([str(bin_dir / "llm-opt"), *opt_passes, "-o", str(exec_mlir)], stdin=translate.stdout)
    translate.stdout.close()
    if translate.wait() or lower.returncode:
        sys.exit("error: compiling the model failed")
    export = subprocess.run([str(bin_dir / "llm-translate"), "--export-program", str(exec_mlir), "-o", str(program)])
    if export.returncode:
        sys.exit("error: exporting the program failed")
    return program, exec_mlir


def make_inputs(args, cfg_path: Path, work: Path, env: Dict[str, str]) -> Tuple[Path, Path]:
    """Random weights and tokens (seed 0), written once per workdir."""
    weights = work / f"{cfg_path.stem}.safetensors"
    num_tokens = max(100_000, args.steps * args.batch * args.seq + 1)
    tokens = work / f"{cfg_path.stem}-tokens-{num_tokens}.npy"
    if not weights.exists() or not tokens.exists():
        subprocess.run([sys.executable, "-m", "llmir.make_inputs", "--config", str(cfg_path), "--weights",
                        str(weights), "--tokens", str(tokens), "--num-tokens", str(num_tokens), "--seed", "0"],
                       env=env, check=True)
    return weights, tokens


def llm_run_cmd(args, program: Path, weights: Path, tokens: Path, log: Path, *extra: str) -> List[str]:
    return [str(Path(args.bin_dir) / "llm-run"), str(program), "--weights", str(weights), "--data", str(tokens),
            "--steps", str(args.steps), "--quiet", "--log-json", str(log), *extra]


def read_step_log(log: Path) -> Run:
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [r["step_ms"] for r in rows], [r["loss"] for r in rows]


class TorchPeer:
    """torch + llmir.reference on the benchmark's weights and tokens, in this process."""

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


def run_rounds(args, run_ours: Callable[[], Run], run_peer: Optional[Callable[[], Run]]):
    """Alternates the two sides --rounds times (so load from other processes hits both alike).

    Returns (ours timed ms, peer timed ms, ours losses, peer losses) with the timed steps pooled over the rounds and
    the losses of the last round."""
    ours_ms: List[float] = []
    peer_ms: List[float] = []
    ours_loss: List[float] = []
    peer_loss: List[float] = []
    for r in range(args.rounds):
        times, ours_loss = run_ours()
        ours_ms += times[args.warmup:]
        print(f"round {r}: ours    step ms: {' '.join(f'{t:.0f}' for t in times)}", flush=True)
        if run_peer:
            peer_times, peer_loss = run_peer()
            peer_ms += peer_times[args.warmup:]
            ratio = statistics.median(peer_times[args.warmup:]) / statistics.median(times[args.warmup:])
            print(f"round {r}: pytorch step ms: {' '.join(f'{t:.0f}' for t in peer_times)}  "
                  f"(this round's ratio {ratio:.2f})", flush=True)
    return ours_ms, peer_ms, ours_loss, peer_loss


def check_losses(ours_loss: Sequence[float], peer_loss: Sequence[float], every_step: bool = False) -> bool:
    """Prints the losses of both sides (step 0, or every step) and whether they agree to LOSS_RTOL."""
    if len(ours_loss) != len(peer_loss) or not ours_loss:
        print(f"loss: ours has {len(ours_loss)} steps, pytorch {len(peer_loss)}: MISMATCH")
        return False
    rel = [abs(a - b) / abs(b) for a, b in zip(ours_loss, peer_loss)]
    ok = max(rel) <= LOSS_RTOL
    if every_step:
        print(f"{'step':>4} {'ours loss':>12} {'pytorch loss':>13} {'rel diff':>9}")
        for i, (a, b, d) in enumerate(zip(ours_loss, peer_loss, rel)):
            print(f"{i:>4} {a:>12.7f} {b:>13.7f} {d:>9.2e}")
        print(f"max rel diff over {len(rel)} steps {max(rel):.2e}, tol {LOSS_RTOL:g}: {'ok' if ok else 'MISMATCH'}")
    else:
        print(f"loss step 0: ours {ours_loss[0]:.7f}  pytorch {peer_loss[0]:.7f}  "
              f"(max rel diff over {len(rel)} steps {max(rel):.2e}, tol {LOSS_RTOL:g}: {'ok' if ok else 'MISMATCH'})")
    return ok


def print_settings(args, timed_steps: int) -> None:
    coretype = f", OPENBLAS_CORETYPE={args.openblas_coretype}" if args.openblas_coretype else ""
    print(f"threads {args.threads}{coretype}; median step time of {timed_steps} timed steps per side "
          f"({args.rounds} round(s) of {args.steps} steps, the first {args.warmup} of each left out)")


def print_throughput(args, cfg_path: Path, ours_ms: Sequence[float], peer_ms: Sequence[float]) -> None:
    """The table: tokens/s of both sides (from the median step time) and ours/pytorch."""
    tokens_per_step = args.batch * args.seq
    ours = statistics.median(ours_ms)
    header = f"{'model':<12} {'shape':<10} {'ours tok/s':>11} {'pytorch tok/s':>14} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    shape = f"{args.batch}x{args.seq}"
    ours_tps = tokens_per_step / (ours / 1e3)
    if peer_ms:
        peer_tps = tokens_per_step / (statistics.median(peer_ms) / 1e3)
        print(f"{cfg_path.stem:<12} {shape:<10} {ours_tps:>11.0f} {peer_tps:>14.0f} {ours_tps / peer_tps:>6.2f}")
    else:
        print(f"{cfg_path.stem:<12} {shape:<10} {ours_tps:>11.0f} {'-':>14} {'-':>6}")
