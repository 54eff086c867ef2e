#!/usr/bin/env python3
"""Memory estimate vs measured peak RSS of llm-run on CPU.

For tiny-to-small GPT-2 / LLaMA train steps on one CPU rank, runs llm-run
for 2 steps and reads the peak resident set (VmHWM, via wait4's ru_maxrss)
of the process, next to the estimator's per-rank total
(--llm-memory-report: weights + AdamW state + inputs + activations +
gradients + working memory, the part llm-run keeps in its arena) and the
exec plan's arena_bytes.

The process also holds things the estimator does not model: the binary and
its libraries, OpenBLAS/OpenMP buffers and the program file. That fixed
part is measured once with the smallest program (`baseline`, ~12 MiB), so
the "activations+state" RSS compared with the estimate is
  measured = peak RSS - baseline RSS.
(The safetensors weights are not resident at the peak beyond ~5% of the
arena: subtracting the file size would undercount.)

    python3 bench/memory/rss_vs_estimate.py [--bin build/bin]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CASES = [
    # config json (dict or shipped name), batch, seq
    ("gpt2-tiny", 2, 16),   # baseline
    ("gpt2-tiny", 64, 64),
    ("llama-tiny", 64, 64),
    ({"model_type": "gpt2", "n_embd": 256, "n_head": 8, "n_layer": 4, "n_positions": 256,
      "vocab_size": 4096}, 16, 256),
    ({"model_type": "gpt2", "n_embd": 512, "n_head": 8, "n_layer": 6, "n_positions": 256,
      "vocab_size": 8192}, 8, 256),
    ("gpt2-124m", 2, 256),
    ("gpt2-124m", 8, 256),
]


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)}\n{r.stderr}")
    return r.stdout


def peak_rss(cmd):
    """Peak RSS in bytes of one child (ru_maxrss is in KiB on Linux)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"error: {' '.join(cmd)}: {proc.stderr.read().decode()}")
    return usage.ru_maxrss * 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    args = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"), OMP_NUM_THREADS="1")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (cfg, b, s) in enumerate(CASES):
            if isinstance(cfg, dict):
                path = os.path.join(tmp, f"cfg{i}.json")
                with open(path, "w") as f:
                    json.dump(cfg, f)
                name = f"gpt2-h{cfg['n_embd']}-l{cfg['n_layer']}"
            else:
                path = os.path.join(ROOT, "examples", "models", cfg + ".json")
                name = cfg
            mlir = os.path.join(tmp, f"m{i}.mlir")
            run([os.path.join(args.bin, "llm-translate"), "--import-hf-config", path,
                 "--batch", str(b), "--seq", str(s), "-o", mlir])
            report = json.loads(run([os.path.join(args.bin, "llm-opt"), mlir,
                                     "--llm-memory-report=json", "-o", "/dev/null"]))
            exec_ir = os.path.join(tmp, f"m{i}.exec.mlir")
            run([os.path.join(args.bin, "llm-opt"), mlir, "--tfm-build-train-step",
                 "--llm-lower-to-exec", "-o", exec_ir])
            arena = int(re.search(r"arena_bytes = (\d+)", open(exec_ir).read()).group(1))
            prog = os.path.join(tmp, f"m{i}.llmir")
            run([os.path.join(args.bin, "llm-translate"), "--export-program", exec_ir, "-o", prog])
            weights = os.path.join(tmp, f"w{i}.safetensors")
            tokens = os.path.join(tmp, f"t{i}.npy")
            run([sys.executable if "numpy" in sys.modules else "/usr/bin/python3", "-m",
                 "llmir.make_inputs", "--config", path, "--weights", weights, "--tokens", tokens,
                 "--num-tokens", str(4 * b * s + 1), "--seed", "1"], env=env)
            rss = peak_rss([os.path.join(args.bin, "llm-run"), prog, "--weights", weights,
                            "--data", tokens, "--steps", "2", "--quiet"])
            rows.append(dict(name=name, b=b, s=s, est=report["peak_bytes"], arena=arena, rss=rss,
                             wfile=os.path.getsize(weights)))
    base = rows[0]
    print(f"{'model':<18}{'batch':>6}{'seq':>5}{'estimate MiB':>14}{'arena MiB':>11}"
          f"{'peak RSS MiB':>14}{'measured MiB':>14}{'est/measured':>14}")
    mib = 1 << 20
    for r in rows:
        measured = r["rss"] - base["rss"]
        ratio = r["est"] / measured if r is not base and measured > 0 else float("nan")
        print(f"{r['name']:<18}{r['b']:>6}{r['s']:>5}{r['est'] / mib:>14.2f}{r['arena'] / mib:>11.2f}"
              f"{r['rss'] / mib:>14.2f}{measured / mib:>14.2f}{ratio:>14.3f}")
    print(f"baseline: {base['name']} b={base['b']} s={base['s']} peak RSS "
          f"{base['rss'] / mib:.1f} MiB (binary, libraries, runtime buffers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
