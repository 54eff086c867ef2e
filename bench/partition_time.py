#!/usr/bin/env python3
"""Partition compile time: `llm-opt --llm-partition` vs upstream `sharding-propagation` + `shard-partition`.

    /usr/bin/python3 bench/partition_time.py [--layers 12,24,48,96] [--runs 5] [--attention batched|elementwise]

Ours: a GPT-3-sized GPT-2-form model (examples/models/gpt3-175b.json with n_layer changed), imported once per size
with `llm-translate --import-hf-config --batch B --seq 2048`, then `llm-opt --llm-partition="tp=8"` (and "dp=2 tp=8"
on a batch-2 import: dp needs the batch to divide).  Peer: upstream `mlir-opt` running
`builtin.module(func.func(sharding-propagation,shard-partition))` on an equivalent linalg graph of the same layers
(generated here; see bench/README.md) on `shard.grid @grid(shape = 8)` (2x8 for the dp row) with the Megatron weight
splits pinned by `shard.shard`.  Reports the median process wall time and the median pass time from -mlir-timing,
and counts the `shard.all_reduce`s of both outputs (the plan check).  Prints a table; never fails on time
(STYLE.md "Benchmarks"); exit 1 only if a compile fails or a plan has the wrong number of all-reduces.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parent.parent
UPSTREAM_PIPELINE = "builtin.module(func.func(sharding-propagation,shard-partition))"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", default="12,24,48,96", help="comma-separated layer counts (default 12,24,48,96)")
    p.add_argument("--runs", type=int, default=5, help="timed runs per side and row; the median is reported (>= 5)")
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--model", default=str(REPO / "examples" / "models" / "gpt3-175b.json"),
                   help="HF config whose n_layer is replaced (default examples/models/gpt3-175b.json)")
    p.add_argument("--attention", choices=["batched", "elementwise"], default="batched",
                   help="upstream graph's attention: per-head contractions + two batched matmuls (default), or "
                        "q/k/v as plain linalg.matmul and an elementwise stand-in for the core")
    p.add_argument("--no-dp", action="store_true", help="skip the dp=2 tp=8 rows")
    p.add_argument("--bin-dir", default=str(REPO / "build" / "bin"), help="directory of llm-translate/llm-opt")
    p.add_argument("--mlir-opt", default="/usr/lib/llvm-22/bin/mlir-opt", help="upstream mlir-opt")
    p.add_argument("--workdir", help="keep the generated inputs and outputs here (default: a temp dir)")
    return p


# ---------------------------------------------------------------------------------------------------------------
# Upstream's input: the Megatron block as linalg on tensors.


class _LinalgGraph:
    """Emits one func of linalg ops; contractions are given einsum-style ("sk,kn->sn")."""

    def __init__(self):
        self.body: List[str] = []
        self.maps: Dict[str, str] = {}
        self.n = 0

    def fresh(self) -> str:
        self.n += 1
        return f"%v{self.n}"

    @staticmethod
    def ty(shape: Sequence[int]) -> str:
        return "tensor<" + "x".join(str(d) for d in shape) + "xf32>"

    def affine_map(self, dims: str, result: str) -> str:
        text = f"affine_map<({', '.join(dims)}) -> ({', '.join(result)})>"
        if text not in self.maps:
            self.maps[text] = f"#m{len(self.maps)}"
        return self.maps[text]

    def init(self, shape: Sequence[int], fill: bool) -> str:
        empty = self.fresh()
        self.body.append(f"{empty} = tensor.empty() : {self.ty(shape)}")
        if not fill:
            return empty
        filled = self.fresh()
        self.body.append(f"{filled} = linalg.fill ins(%zero : f32) outs({empty} : {self.ty(shape)}) -> {self.ty(shape)}")
        return filled

    def einsum(self, spec: str, a: Tuple[str, List[int]], b: Tuple[str, List[int]]) -> Tuple[str, List[int]]:
        lhs, out = spec.split("->")
        sa, sb = lhs.split(",")
        size = dict(zip(sa, a[1]))
        size.update(zip(sb, b[1]))
        shape = [size[c] for c in out]
        acc = self.init(shape, fill=True)
        res = self.fresh()
        types = f"ins({a[0]}, {b[0]} : {self.ty(a[1])}, {self.ty(b[1])}) outs({acc} : {self.ty(shape)})"
        if spec in ("sk,kn->sn", "hsk,hkn->hsn"):
            op = "linalg.matmul" if spec[0] == "s" else "linalg.batch_matmul"
            self.body.append(f"{res} = {op} {types} -> {self.ty(shape)}")
            return res, shape
        loops = out + "".join(dict.fromkeys(c for c in sa + sb if c not in out))
        maps = ", ".join(self.affine_map(loops, s) for s in (sa, sb, out))
        iters = ", ".join('"parallel"' if c in out else '"reduction"' for c in loops)
        self.body += [f"{res} = linalg.generic {{indexing_maps = [{maps}], iterator_types = [{iters}]}} {types} {{",
                      "^bb0(%a: f32, %b: f32, %c: f32):",
                      "  %p = arith.mulf %a, %b : f32",
                      "  %s = arith.addf %c, %p : f32",
                      "  linalg.yield %s : f32",
                      f"}} -> {self.ty(shape)}"]
        return res, shape

    def elementwise(self, ins: Sequence[str], shape: List[int], body: Sequence[str]) -> Tuple[str, List[int]]:
        """linalg.generic with identity maps; `body` reads %i0.. and leaves its result in %r."""
        init = self.init(shape, fill=False)
        res = self.fresh()
        ident = self.affine_map("abcd"[:len(shape)], "abcd"[:len(shape)])
        maps = ", ".join([ident] * (len(ins) + 1))
        iters = ", ".join(['"parallel"'] * len(shape))
        args = ", ".join(f"%i{i}: f32" for i in range(len(ins)))
        self.body += [f"{res} = linalg.generic {{indexing_maps = [{maps}], iterator_types = [{iters}]}} "
                      f"ins({', '.join(ins)} : {', '.join([self.ty(shape)] * len(ins))}) outs({init} : {self.ty(shape)}) {{",
                      f"^bb0({args}, %o: f32):", *("  " + line for line in body), "  linalg.yield %r : f32",
                      f"}} -> {self.ty(shape)}"]
        return res, shape

    def add(self, a: Tuple[str, List[int]], b: Tuple[str, List[int]], pin: Optional[str] = None):
        init = self.init(a[1], fill=False)
        res = self.fresh()
        t = self.ty(a[1])
        self.body.append(f"{res} = linalg.add ins({a[0]}, {b[0]} : {t}, {t}) outs({init} : {t}) -> {t}")
        if pin:
            pinned = self.fresh()
            self.body.append(f"{pinned} = shard.shard {res} to {pin} : {t}")
            res = pinned
        return res, a[1]


def upstream_module(layers: int, cfg: dict, seq: int, batch: int, dp: int, tp: int, attention: str) -> str:
    """The transformer blocks of `cfg` as linalg, weights pinned to Megatron's splits.

    Per layer: q, k, v projections (column-parallel: the weight's output/head dim split over tp), the attention core,
    the output projection (row-parallel: its input/head dim split), residual add, fc1 (column), a tanh-GELU-like
    elementwise op, fc2 (row), residual add.  With dp > 1 the activations get a leading batch dim split over dp
    (the input and every residual add pinned to it).
    Embedding, layer norms, LM head and loss are left out (see bench/README.md).
    """
    H, nh, S, F = cfg["n_embd"], cfg["n_head"], seq, cfg.get("n_inner") or 4 * cfg["n_embd"]
    D = H // nh
    g = _LinalgGraph()
    b = "b" if dp > 1 else ""  # activation batch dim (only with dp: keeps the tp-only graph on named 2-D ops)
    bs = [batch] if dp > 1 else []
    tp_axis = 1 if dp > 1 else 0
    args: List[str] = []
    pins: List[str] = []

    def weight(shape: List[int], split_dim: int) -> Tuple[str, List[int]]:
        name = f"%w{len(args)}"
        args.append(f"{name}: {g.ty(shape)}")
        pinned = g.fresh()
        pins.append(f"{pinned} = shard.shard {name} to %split_d{split_dim} annotate_for_users : {g.ty(shape)}")
        return pinned, shape

    x: Tuple[str, List[int]] = ("%x", bs + [S, H])
    # Propagation alone loses the batch split after the first residual add and all-gathers the batch on every
    # rank; pinning the residual stream keeps data parallelism.
    pin = "%split_batch" if dp > 1 else None
    if dp > 1:
        pins.append(f"%x_dp = shard.shard %x to %split_batch annotate_for_users : {g.ty(x[1])}")
        x = ("%x_dp", x[1])
    for _ in range(layers):
        if attention == "batched":
            # Heads explicit so the core stays local per head group: q/v [b,h,s,d], k transposed [b,h,d,s].
            q = g.einsum(f"{b}sk,khd->{b}hsd", x, weight([H, nh, D], 1))
            kt = g.einsum(f"{b}sk,khd->{b}hds", x, weight([H, nh, D], 1))
            v = g.einsum(f"{b}sk,khd->{b}hsd", x, weight([H, nh, D], 1))
            scores = g.einsum(f"{b}hsd,{b}hdt->{b}hst" if b else "hsk,hkn->hsn", q, kt)
            probs = g.elementwise([scores[0]], scores[1], ["%r = math.exp %i0 : f32"])
            ctx = g.einsum(f"{b}hst,{b}htd->{b}hsd" if b else "hsk,hkn->hsn", probs, v)
            attn = g.einsum(f"{b}hsd,hdn->{b}sn", ctx, weight([nh, D, H], 0))
        else:
            q = g.einsum(f"{b}sk,kn->{b}sn", x, weight([H, H], 1))
            k = g.einsum(f"{b}sk,kn->{b}sn", x, weight([H, H], 1))
            v = g.einsum(f"{b}sk,kn->{b}sn", x, weight([H, H], 1))
            core = g.elementwise([q[0], k[0], v[0]], q[1], ["%t = arith.mulf %i0, %i1 : f32",
                                                            "%r = arith.addf %t, %i2 : f32"])
            attn = g.einsum(f"{b}sk,kn->{b}sn", core, weight([H, H], 0))
        x = g.add(x, attn, pin)
        h = g.einsum(f"{b}sk,kn->{b}sn", x, weight([H, F], 1))
        h = g.elementwise([h[0]], h[1], ["%t = math.tanh %i0 : f32", "%r = arith.mulf %i0, %t : f32"])
        x = g.add(x, g.einsum(f"{b}sk,kn->{b}sn", h, weight([F, H], 0)), pin)

    grid = f"{dp}x{tp}" if dp > 1 else f"{tp}"
    split = lambda dim: "[" + ", ".join(["[]"] * dim + [f"[{tp_axis}]"]) + "]"
    header = [f"%split_d0 = shard.sharding @grid split_axes = {split(0)} : !shard.sharding",
              f"%split_d1 = shard.sharding @grid split_axes = {split(1)} : !shard.sharding"]
    if dp > 1:
        header.append("%split_batch = shard.sharding @grid split_axes = [[0]] : !shard.sharding")
    lines = [f"{ref} = {text}" for text, ref in g.maps.items()]
    lines += ["module {", f"  shard.grid @grid(shape = {grid})",
              f"  func.func @forward(%x: {g.ty(bs + [S, H])}, {', '.join(args)}) -> {g.ty(x[1])} {{",
              "    %zero = arith.constant 0.0 : f32"]
    lines += ["    " + line for line in header + pins + g.body]
    lines += [f"    return {x[0]} : {g.ty(x[1])}", "  }", "}", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Timing.


def _timed(cmd: List[str], out: Path, pass_line: str) -> Tuple[float, Optional[float]]:
    """Runs `cmd` (with -mlir-timing) once; returns (process wall ms, pass wall ms from the timing report)."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd + ["-mlir-timing", "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    wall = (time.perf_counter() - t0) * 1e3
    if proc.returncode:
        sys.exit(f"error: {' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    m = re.search(r"^\s*([0-9.]+) \(\s*[0-9.]+%\)\s+" + re.escape(pass_line) + r"\s*$", proc.stderr, re.M)
    return wall, float(m.group(1)) * 1e3 if m else None


def _op_count(tool: str, path: Path) -> int:
    """Every op in the file, nested ones included (linalg named ops' implicit bodies count too)."""
    proc = subprocess.run([tool, str(path), "--print-op-stats", "-o", "/dev/null"], capture_output=True, text=True,
                          check=True)
    return sum(int(n) for n in re.findall(r",\s*(\d+)\s*$", proc.stdout + proc.stderr, re.M))


def _count(path: Path, word: str) -> int:
    return path.read_text().count(word)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.runs < 5:
        sys.exit("error: --runs must be >= 5")
    layer_counts = [int(n) for n in args.layers.split(",")]
    base_cfg = json.loads(Path(args.model).read_text())
    bin_dir = Path(args.bin_dir)
    llm_opt = str(bin_dir / "llm-opt")
    plans = [(1, 8)] + ([] if args.no_dp else [(2, 8)])
    rows = []
    ok = True
    with tempfile.TemporaryDirectory(prefix="llmir-bench-") as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for layers in layer_counts:
            cfg = dict(base_cfg, n_layer=layers)
            cfg_path = work / f"gpt3-{layers}l.json"
            cfg_path.write_text(json.dumps(cfg, indent=1))
            for dp, tp in plans:
                batch = dp  # the smallest batch the plan accepts
                ours_in = work / f"ours-{layers}l-b{batch}.mlir"
                if not ours_in.exists():
                    subprocess.run([str(bin_dir / "llm-translate"), "--import-hf-config", str(cfg_path), "--batch",
                                    str(batch), "--seq", str(args.seq), "-o", str(ours_in)], check=True)
                peer_in = work / f"upstream-{layers}l-dp{dp}-tp{tp}-{args.attention}.mlir"
                peer_in.write_text(upstream_module(layers, cfg, args.seq, batch, dp, tp, args.attention))
                plan = f"dp={dp} tp={tp}" if dp > 1 else f"tp={tp}"
                ours_out = work / f"ours-{layers}l-dp{dp}-tp{tp}.out.mlir"
                peer_out = work / f"upstream-{layers}l-dp{dp}-tp{tp}.out.mlir"
                ours_cmd = [llm_opt, str(ours_in), f"--llm-partition={plan}"]
                peer_cmd = [args.mlir_opt, str(peer_in), f"--pass-pipeline={UPSTREAM_PIPELINE}"]
                ours_t, peer_t = [], []
                for _ in range(args.runs):  # alternate so machine load hits both sides alike
                    ours_t.append(_timed(ours_cmd, ours_out, "LLMPartition"))
                    peer_t.append(_timed(peer_cmd, peer_out, "'func.func' Pipeline"))
                ar_ours, ar_peer = _count(ours_out, "shard.all_reduce "), _count(peer_out, "shard.all_reduce ")
                # Megatron: one all-reduce after each row-parallel matmul (2 per layer); ours adds the vocab-parallel
                # embedding (1) and cross-entropy (3: max, sum-exp, target logit).
                # With dp, ours also averages the loss over dp (1 more).
                good = ar_ours == 2 * layers + 4 + (dp > 1) and ar_peer == 2 * layers
                extra = {w: _count(peer_out, w) for w in ("shard.all_gather", "shard.all_slice", "shard.all_to_all")}
                good = good and not any(extra.values())
                ok = ok and good
                med = lambda xs: statistics.median(xs) if all(x is not None for x in xs) else float("nan")
                rows.append(dict(layers=layers, plan=plan, ops_ours=_op_count(llm_opt, ours_in),
                                 ops_peer=_op_count(args.mlir_opt, peer_in),
                                 ours=med([w for w, _ in ours_t]), peer=med([w for w, _ in peer_t]),
                                 ours_pass=med([p for _, p in ours_t]), peer_pass=med([p for _, p in peer_t]),
                                 ar=f"{ar_ours}/{ar_peer}", good=good))
                r = rows[-1]
                print(f"{layers} layers {plan}: ours {r['ours']:.0f} ms (pass {r['ours_pass']:.1f}), upstream "
                      f"{r['peer']:.0f} ms (pass {r['peer_pass']:.1f}), all-reduces {r['ar']}"
                      + ("" if good else f"  PLAN MISMATCH {extra}"), flush=True)

    print()
    print(f"median of {args.runs} runs; process = wall time of the whole tool run (parse + pass + print to a file), "
          f"pass = -mlir-timing's LLMPartition vs 'func.func' Pipeline (propagation + partition); "
          f"upstream attention: {args.attention}")
    header = (f"{'layers':>6} {'plan':<9} {'ops ours':>9} {'ops upstr':>9} {'ours ms':>8} {'upstr ms':>8} "
              f"{'ratio':>6} {'ours pass':>9} {'upstr pass':>10} {'ratio':>6} {'pass ms/layer':>13} {'all-reduce':>11}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['layers']:>6} {r['plan']:<9} {r['ops_ours']:>9} {r['ops_peer']:>9} {r['ours']:>8.1f} "
              f"{r['peer']:>8.1f} {r['ours'] / r['peer']:>6.2f} {r['ours_pass']:>9.1f} {r['peer_pass']:>10.1f} "
              f"{r['ours_pass'] / r['peer_pass']:>6.2f} {r['ours_pass'] / r['layers']:>13.3f} "
              f"{r['ar'] + ('' if r['good'] else ' !'):>11}")
    print("all-reduce: ours/upstream; expected ours 2 per layer + 4 (embedding 1, vocab-parallel CE 3; +1 loss mean "
          "over dp with dp=2), upstream 2 per layer (it has no embedding/LM head/loss)")
    if not ok:
        print("error: a plan has an unexpected collective count (marked !)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
