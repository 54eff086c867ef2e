#!/usr/bin/env python3
"""Text generation throughput on CPU: llm-run --generate (prefill + decode programs over a KV cache) vs PyTorch with
a KV cache, same weights, prompts and threads.

    /usr/bin/python3 bench/generate_cpu.py [--model gpt2-124m] [--batches 1 8] [--prompt-len 64] [--new-tokens 32]
                                           [--runs 6] [--threads N] [--cp 1 2]

Compiles `llm-translate --inference` for each batch, writes random weights once (cached in --workdir) and random
prompts (all --prompt-len long, so both sides process the same tokens), then per batch alternates --runs runs of
`llm-run --generate --warmup 1` (prefill and decode tokens/s as it prints them) with --runs runs of a PyTorch
GPT-2 with a preallocated KV cache (prefill with causal attention over the prompt, decode one token per step attending the cache; torch 1.13 has
no scaled_dot_product_attention, so both are matmul + softmax as in llmir.reference).
Both sides: OMP_WAIT_POLICY=PASSIVE, the same thread count (torch.set_num_threads + OPENBLAS_NUM_THREADS for
PyTorch, OMP_NUM_THREADS + OPENBLAS_NUM_THREADS for llm-run), greedy decoding. The first run of each side is a
warm-up and left out; the table shows medians of the rest and ours/pytorch ratios. Checks that both sides generate
the same tokens (exit 1 if not). Never fails on time (STYLE.md "Benchmarks").
`--cp 1 2`: one row per context-parallel size: `--llm-partition=cp=N`, N ranks under mpirun with --threads / N
threads each (the same cores), so the prefill splits the prompt over N ranks; decode runs replicated.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Tuple

import _common as common

LINE = re.compile(r"^(prefill|decode): .*\| ([0-9.]+) tokens/s", re.M)


def compile_inference(args, cfg_path: Path, work: Path, batch: int, cp: int = 1) -> Path:
    bin_dir = Path(args.bin_dir)
    program = work / f"{cfg_path.stem}-gen-b{batch}-p{args.prompt_len}-n{args.new_tokens}-cp{cp}.llmir"
    max_seq = args.prompt_len + args.new_tokens
    translate = subprocess.Popen(
        [str(bin_dir / "llm-translate"), "--import-hf-config", str(cfg_path), "--inference", "--batch", str(batch),
         "--max-seq", str(max_seq), "--prompt-len", str(args.prompt_len)], stdout=subprocess.PIPE)
    lower = subprocess.Popen([str(bin_dir / "llm-opt"), f"--llm-partition=cp={cp}", "--llm-lower-to-exec"],
                             stdin=translate.stdout, stdout=subprocess.PIPE)
    translate.stdout.close()
    export = subprocess.run([str(bin_dir / "llm-translate"), "--export-program", "-o", str(program)],
                            stdin=lower.stdout)
    lower.stdout.close()
    if translate.wait() or lower.wait() or export.returncode:
        sys.exit("error: compiling the inference program failed")
    return program


def run_ours(args, program: Path, weights: Path, prompts: Path, out: Path, env, cp: int = 1) -> Tuple[float, float]:
    launch = ["mpirun", "--oversubscribe", "--allow-run-as-root", "-np", str(cp)] if cp > 1 else []
    res = subprocess.run(launch + [str(Path(args.bin_dir) / "llm-run"), str(program), "--weights", str(weights), "--generate",
                          "--prompt", str(prompts), "--max-new-tokens", str(args.new_tokens), "--warmup", "1",
                          "--out", str(out)], env=env, capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"error: llm-run --generate failed:\n{res.stderr}")
    rates = dict(LINE.findall(res.stderr))
    return float(rates["prefill"]), float(rates["decode"])


class TorchKVCache:
    """GPT-2 (llmir.reference's weights and numerics) with a preallocated KV cache."""

    def __init__(self, args, cfg_path: Path, weights: Path):
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
        sys.path.insert(0, str(common.REPO / "python"))
        import torch
        import torch.nn.functional as F

        from llmir import config, reference

        torch.set_num_threads(args.threads)
        self.torch, self.F, self.args = torch, F, args
        self.cfg = config.load_config(str(cfg_path))
        if not self.cfg.is_gpt2:
            sys.exit("error: the PyTorch KV-cache peer implements GPT-2 only")
        self.p = reference.load_params(self.cfg, str(weights))
        self.act = reference.activation(self.cfg.activation)

    def _block(self, i, x, kc, vc, pos):
        F, torch, c, p = self.F, self.torch, self.cfg, self.p
        B, S, h = x.shape
        H, D = c.num_heads, c.head_dim
        pre = f"h.{i}."
        a = F.layer_norm(x, (h,), p[pre + "ln_1.weight"], p[pre + "ln_1.bias"], c.norm_eps)
        qkv = torch.addmm(p[pre + "attn.c_attn.bias"], a.reshape(-1, h), p[pre + "attn.c_attn.weight"])
        q, k, v = (t.view(B, S, H, D).transpose(1, 2) for t in qkv.view(B, S, 3 * h).split(h, dim=-1))
        kc[:, :, pos:pos + S] = k
        vc[:, :, pos:pos + S] = v
        # Prefill: the prompt attends to itself (causal); decode: the new token
        # attends to the whole cache so far.
        keys, values = (k, v) if pos == 0 else (kc[:, :, :pos + S], vc[:, :, :pos + S])
        w = torch.matmul(q, keys.transpose(-1, -2)) / float(D) ** 0.5
        if pos == 0 and S > 1:
            mask = torch.ones(S, S, dtype=torch.bool).tril()
            w = w.masked_fill(~mask, torch.finfo(w.dtype).min)
        o = torch.matmul(F.softmax(w, dim=-1), values)
        o = o.transpose(1, 2).reshape(B * S, h)
        x = x + torch.addmm(p[pre + "attn.c_proj.bias"], o, p[pre + "attn.c_proj.weight"]).view(B, S, h)
        m = F.layer_norm(x, (h,), p[pre + "ln_2.weight"], p[pre + "ln_2.bias"], c.norm_eps)
        m = self.act(torch.addmm(p[pre + "mlp.c_fc.bias"], m.reshape(B * S, h), p[pre + "mlp.c_fc.weight"]))
        return x + torch.addmm(p[pre + "mlp.c_proj.bias"], m, p[pre + "mlp.c_proj.weight"]).view(B, S, h)

    def _step(self, ids, caches, pos):
        F, c, p = self.F, self.cfg, self.p
        S = ids.shape[1]
        x = F.embedding(ids, p["wte.weight"]) + p["wpe.weight"][pos:pos + S].unsqueeze(0)
        for i in range(c.num_layers):
            x = self._block(i, x, *caches[i], pos)
        last = F.layer_norm(x[:, -1], (c.hidden_size,), p["ln_f.weight"], p["ln_f.bias"], c.norm_eps)
        return F.linear(last, p["wte.weight"])

    def run(self, prompts) -> Tuple[float, float, List[List[int]]]:
        torch, c, a = self.torch, self.cfg, self.args
        with torch.no_grad():
            ids = torch.as_tensor(prompts, dtype=torch.int64)
            B, P = ids.shape
            shape = (B, c.num_heads, P + a.new_tokens, c.head_dim)
            caches = [(torch.zeros(shape), torch.zeros(shape)) for _ in range(c.num_layers)]
            t0 = time.perf_counter()
            tok = self._step(ids, caches, 0).argmax(-1)
            prefill = time.perf_counter() - t0
            out = [tok]
            t0 = time.perf_counter()
            for step in range(1, a.new_tokens):
                tok = self._step(tok.unsqueeze(1), caches, P + step - 1).argmax(-1)
                out.append(tok)
            decode = time.perf_counter() - t0
        tokens = torch.stack(out, 1).tolist()
        return B * P / prefill, B * (a.new_tokens - 1) / decode, tokens


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="gpt2-124m")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--runs", type=int, default=6, help="runs per side and batch, the first a warm-up (default 6)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--workdir")
    ap.add_argument("--bin-dir", default=str(common.REPO / "build" / "bin"))
    ap.add_argument("--skip-pytorch", action="store_true")
    ap.add_argument("--cp", type=int, nargs="+", default=[1],
                    help="context-parallel sizes, one row each (the prompt length must divide into 2 x cp chunks)")
    args = ap.parse_args(argv)
    for cp in args.cp:
        if cp < 1 or (cp > 1 and args.prompt_len % (2 * cp)):
            sys.exit(f"error: --cp {cp}: --prompt-len {args.prompt_len} must split into 2 x cp chunks")
    if args.runs < 6:
        sys.exit("error: --runs must be >= 6 (one warm-up, at least 5 timed)")
    cfg_path = common.config_path(args.model)
    env = common.thread_env(args.threads)
    import numpy as np

    rows = []
    same = True
    with tempfile.TemporaryDirectory(prefix="llmir-bench-") as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        weights = work / f"{cfg_path.stem}.safetensors"
        if not weights.exists():
            subprocess.run([sys.executable, "-m", "llmir.make_inputs", "--config", str(cfg_path), "--weights",
                            str(weights), "--seed", "0"], env=env, check=True)
        peer = None if args.skip_pytorch else TorchKVCache(args, cfg_path, weights)
        for batch in args.batches:
            programs = {cp: compile_inference(args, cfg_path, work, batch, cp) for cp in args.cp}
            rng = np.random.default_rng(batch)
            vocab = peer.cfg.vocab_size if peer else json.loads(cfg_path.read_text())["vocab_size"]
            prompts_arr = rng.integers(0, vocab, size=(batch, args.prompt_len), dtype=np.int64)
            prompts = work / f"prompts-b{batch}.npy"
            np.save(prompts, prompts_arr)
            out = work / f"out-b{batch}.npy"
            # The cp sizes alternate within each run (with the peer), so a change in
            # the machine's load falls on all of them.
            ours, theirs = {cp: [] for cp in args.cp}, []
            for r in range(args.runs):
                if peer:
                    pf, dc, peer_tokens = peer.run(prompts_arr.tolist())
                    theirs.append((pf, dc))
                for cp in args.cp:
                    ours[cp].append(run_ours(args, programs[cp], weights, prompts, out,
                                             common.thread_env(max(1, args.threads // cp)) if cp > 1 else env, cp))
                    if peer and peer_tokens != np.load(out).tolist():
                        same = False
                    print(f"batch {batch} cp {cp} run {r}: ours prefill {ours[cp][-1][0]:.0f} decode "
                          f"{ours[cp][-1][1]:.1f} tok/s" + (f" | pytorch prefill {theirs[-1][0]:.0f} decode "
                                                             f"{theirs[-1][1]:.1f} tok/s" if peer else ""), flush=True)
            med = lambda xs, i: statistics.median(x[i] for x in xs[1:])  # noqa: E731
            for cp in args.cp:
                rows.append((batch, cp, med(ours[cp], 0), med(theirs, 0) if peer else None,
                             med(ours[cp], 1), med(theirs, 1) if peer else None))

    print(f"\nthreads {args.threads}, OMP_WAIT_POLICY=PASSIVE; prompt {args.prompt_len} tokens, {args.new_tokens} new "
          f"tokens (greedy); median of {args.runs - 1} runs after 1 warm-up run per side")
    header = (f"{'model':<10} {'batch':>5} {'cp':>3} {'prefill ours':>13} {'pytorch':>9} {'ratio':>6} "
              f"{'decode ours':>12} {'pytorch':>9} {'ratio':>6}   (tokens/s)")
    print(header)
    print("-" * len(header))
    fmt = lambda v, w, p=0: f"{v:>{w}.{p}f}" if v is not None else f"{'-':>{w}}"  # noqa: E731
    for batch, cp, po, pt, do, dt in rows:
        print(f"{cfg_path.stem:<10} {batch:>5} {cp:>3} {fmt(po, 13)} {fmt(pt, 9)} {fmt(po / pt if pt else None, 6, 2)} "
              f"{fmt(do, 12, 1)} {fmt(dt, 9, 1)} {fmt(do / dt if dt else None, 6, 2)}")
    if peer:
        print(f"generated tokens identical on both sides: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
