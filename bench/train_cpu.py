#!/usr/bin/env python3
"""Training-step throughput and peak memory on CPU: llm-run vs the PyTorch reference, same weights, windows, threads.

    /usr/bin/python3 bench/train_cpu.py [--model gpt2-124m] [--batch 4] [--seq 256] [--steps 8] [--threads N]

Compiles the model's training step (--tfm-build-train-step: forward, backward, AdamW), writes random weights and
tokens once (cached in --workdir), runs llm-run and times `llmir.reference.train` (forward + loss.backward() +
torch.optim.AdamW(betas=(0.9, 0.95), eps=1e-8), weight decay on ndim >= 2 parameters only) on the same windows, with
the same lr and weight decay.  Thread settings and the median over the steps after the warm-up are as in
forward_cpu.py.  Checks that every step's loss agrees (exit 1 if not).  Also prints the compiler's static memory plan
(the predicted peak) beside the measured peak RSS of llm-run.  Never fails on time (STYLE.md "Benchmarks").
See bench/README.md.
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import _common as common

MIB = 1 << 20
_PLAN_KEYS = ("param_bytes", "state_bytes", "input_bytes", "temp_peak_bytes", "arena_bytes")


def largest_param(exec_mlir: Path) -> Tuple[str, int]:
    """(name, bytes) of the largest exec.param of the program (f32)."""
    best = ("-", 0)
    for name, dims in re.findall(r'exec\.param "([^"]+)" at \d+ : <([\dx]+)xf32>', exec_mlir.read_text()):
        n = 4 * math.prod(int(d) for d in dims.split("x"))
        best = max(best, (name, n), key=lambda t: t[1])
    return best


def read_memory_plan(exec_mlir: Path) -> Dict[str, int]:
    """The *_bytes attributes of the (first) exec.program: the compiler's static memory plan."""
    with exec_mlir.open() as f:
        for line in f:
            if "exec.program" in line:
                plan = {k: int(v) for k, v in re.findall(r"(\w+_bytes) = (\d+)", line)}
                missing = [k for k in _PLAN_KEYS if k not in plan]
                if missing:
                    sys.exit(f"error: {exec_mlir}: exec.program has no {', '.join(missing)}")
                return plan
    sys.exit(f"error: {exec_mlir} has no exec.program")


class _MemoryWatch:
    """Polls /proc/PID/status of a running llm-run until it exits: VmHWM (the kernel's peak RSS of the process's
    address space), the RSS split (anon/file) at the sampled peak, and the RSS samples taken during the steps.

    Not wait4's ru_maxrss: Linux carries the pre-exec high-water mark into it, i.e. that of this Python process
    (torch, the peer's weights) which forked llm-run."""

    def __init__(self, pid: int, interval_s: float = 0.02):
        self.pid, self.interval_s = pid, interval_s
        self.peak: Dict[str, int] = {}  # the sample with the largest VmRSS
        self.hwm = 0  # the last VmHWM read: it only grows, and teardown only shrinks the RSS
        self.in_steps: List[int] = []  # VmRSS samples after the first step finished
        self.stepping = threading.Event()  # set by the reader of llm-run's progress lines
        self.done = threading.Event()  # ... after the last one
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _sample(self) -> Optional[Dict[str, int]]:
        try:
            text = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        return {k: int(v) * 1024 for k, v in re.findall(r"^(VmHWM|VmRSS|RssAnon|RssFile|RssShmem):\s+(\d+) kB", text, re.M)}

    def _poll(self) -> None:
        while not self._stop.is_set():
            s = self._sample()
            if s and "VmRSS" in s:
                self.hwm = max(self.hwm, s.get("VmHWM", 0))
                if s["VmRSS"] > self.peak.get("VmRSS", 0):
                    self.peak = s
                if self.stepping.is_set() and not self.done.is_set():
                    self.in_steps.append(s["VmRSS"])
            time.sleep(self.interval_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _watch_progress(stream, watch: _MemoryWatch, last_step: str) -> None:
    """Reads llm-run's stderr: progress lines ("step k/N | ...", flushed per step, unlike the --log-json file) mark
    the end of loading; everything else is passed on.  Samples after the last step's line are teardown."""
    for raw in stream:
        line = raw.decode(errors="replace")
        if line.startswith("step "):
            watch.stepping.set()
            if line.startswith(last_step):
                watch.done.set()
        else:
            sys.stderr.write(line)
    stream.close()


class _Ours:
    """llm-run on the training program; keeps the largest peak RSS over the runs."""

    def __init__(self, args, program: Path, weights: Path, tokens: Path, work: Path, env: Dict[str, str]):
        self.args, self.env = args, env
        self.log = work / "llm-run-train.jsonl"
        # Not --quiet: the progress lines tell the memory watch when loading is over.
        self.cmd = [a for a in common.llm_run_cmd(args, program, weights, tokens, self.log, "--lr", repr(args.lr),
                                                  "--weight-decay", repr(args.weight_decay)) if a != "--quiet"]
        self.max_rss = 0
        self.watch: Optional[_MemoryWatch] = None

    def run(self) -> common.Run:
        proc = subprocess.Popen(self.cmd, env=self.env, stderr=subprocess.PIPE)
        watch = _MemoryWatch(proc.pid)
        reader = threading.Thread(target=_watch_progress, args=(proc.stderr, watch, f"step {self.args.steps}/"))
        reader.start()
        reader.join()  # stderr closes when llm-run exits
        # Until it exits, /proc/PID stays (as a zombie, without memory) while Popen has not reaped it.
        while proc.poll() is None:
            time.sleep(0.01)
        watch.stop()
        if proc.returncode:
            sys.exit(f"error: llm-run exited with {proc.returncode}")
        if watch.hwm >= self.max_rss:
            self.max_rss, self.watch = watch.hwm, watch
        return common.read_step_log(self.log)


class _PyTorchPeer(common.TorchPeer):
    """llmir.reference.train, timed from one optimizer step's end to the next (its callback)."""

    def run(self) -> common.Run:
        times: List[float] = []
        last = [time.perf_counter()]  # step 0 also copies the parameters and builds AdamW: a warm-up step

        def on_step(_step: int, _loss: float, _params) -> None:
            now = time.perf_counter()
            times.append((now - last[0]) * 1e3)
            last[0] = now

        a = self.args
        losses, _ = self.reference.train(self.cfg, self.params, self.tokens, a.steps, a.batch, a.seq, lr=a.lr,
                                         weight_decay=a.weight_decay, callback=on_step)
        return times, losses


def _print_memory(plan: Dict[str, int], ours: _Ours, weights: Path, largest: Tuple[str, int]) -> None:
    rss, watch = ours.max_rss, ours.watch
    rows = [
        ("parameters", plan["param_bytes"]),
        ("optimizer state (AdamW m, v)", plan["state_bytes"]),
        ("inputs (token ids, labels)", plan["input_bytes"]),
        ("temporaries at their peak", plan["temp_peak_bytes"]),
        ("arena = predicted peak", plan["arena_bytes"]),
    ]
    print(f"{'llm-run memory':<46} {'MiB':>9}")
    print("-" * 56)
    for name, b in rows:
        print(f"{name:<46} {b / MIB:>9.1f}")
    print(f"{'measured peak RSS (VmHWM)':<46} {rss / MIB:>9.1f}   ratio measured/predicted "
          f"{rss / plan['arena_bytes']:.3f}")
    print(f"{'  RSS beyond the arena':<46} {(rss - plan['arena_bytes']) / MIB:>9.1f}")
    if watch and watch.peak:
        p = watch.peak
        print(f"{'  at the sampled peak: anonymous / file-backed':<46} "
              f"{p.get('RssAnon', 0) / MIB:>9.1f} / {p.get('RssFile', 0) / MIB:.1f}")
        if watch.in_steps:
            print(f"{'  sampled RSS during the steps: median / max':<46} "
                  f"{statistics.median(watch.in_steps) / MIB:>9.1f} / {max(watch.in_steps) / MIB:.1f}")
    print(f"(the arena is memset at allocation, so all of it is resident; the weights file "
          f"({weights.stat().st_size / MIB:.1f} MiB) is read with pread into a host vector per tensor, not mapped; "
          f"the largest parameter, {largest[0]}, is {largest[1] / MIB:.1f} MiB: that much is copied to the host "
          f"when it is loaded and each step when the finite check before AdamW downloads its gradient)")


def main(argv=None) -> int:
    p = common.add_common_args(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    p.add_argument("--lr", type=float, default=3e-4, help="AdamW learning rate for both sides (default 3e-4)")
    p.add_argument("--weight-decay", type=float, default=0.1,
                   help="decoupled weight decay on ndim >= 2 parameters, both sides (default 0.1)")
    args = p.parse_args(argv)
    cfg_path = common.check_args(args)
    env = common.thread_env(args.threads, args.openblas_coretype)
    with tempfile.TemporaryDirectory(prefix="llmir-bench-") as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        program, exec_mlir = common.compile_program(
            args, cfg_path, work, ["--tfm-build-train-step", "--llm-lower-to-exec"], "train")
        plan = read_memory_plan(exec_mlir)
        weights, tokens = common.make_inputs(args, cfg_path, work, env)
        ours = _Ours(args, program, weights, tokens, work, env)
        peer = None if args.skip_pytorch else _PyTorchPeer(args, cfg_path, weights, tokens)
        ours_ms, peer_ms, ours_loss, peer_loss = common.run_rounds(args, ours.run, peer.run if peer else None)

        print()
        common.print_settings(args, len(ours_ms))
        print(f"training step: forward + backward + AdamW(betas=(0.9, 0.95), eps=1e-8), lr {args.lr:g}, "
              f"weight decay {args.weight_decay:g} on ndim >= 2 parameters")
        ok = common.check_losses(ours_loss, peer_loss, every_step=True) if peer_ms else True
        print()
        common.print_throughput(args, cfg_path, ours_ms, peer_ms)
        print()
        _print_memory(plan, ours, weights, largest_param(exec_mlir))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
