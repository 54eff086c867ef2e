#!/usr/bin/env python3
"""`llm-run --backend cuda` on a machine without a GPU (or a build without CUDA)
must exit with a clean one-line error, not crash.

usage: llm_run_cuda_backend_test.py LLM_RUN WORKDIR
Exit 0: the clean error; 77 (skipped): a GPU is present, nothing to check here.
"""
import os
import subprocess
import sys


def main():
    llm_run, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    missing = os.path.join(work, "missing")
    proc = subprocess.run(
        [llm_run, missing + ".llmir", "--weights", missing + ".safetensors",
         "--data", missing + ".npy", "--steps", "1", "--backend", "cuda"],
        capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    print(out.strip())
    if proc.returncode < 0 or proc.returncode >= 128:
        print(f"FAIL: llm-run died with status {proc.returncode}")
        return 1
    clean = ("--backend cuda: no CUDA device", "--backend cuda: this llm-run was built without CUDA")
    if any(c in out for c in clean):
        if proc.returncode != 1:
            print(f"FAIL: expected exit status 1, got {proc.returncode}")
            return 1
        print("llm-run cuda backend test: clean error, OK")
        return 0
    if "--backend cuda" not in out and proc.returncode == 1:
        print("a CUDA device is present (llm-run went on to read the program): skipped")
        return 77
    print("FAIL: unexpected output")
    return 1


if __name__ == "__main__":
    sys.exit(main())
