#!/usr/bin/env python3
"""Measured vs predicted: llm-run --trace on CPU ranks against llm-opt --llm-simulate for the same plan.

    /usr/bin/python3 bench/trace_vs_simulate.py [--model gpt2-tiny] [--layers 4] [--np 4] [--batch 8] [--seq 64]
        [--steps 6] [--warmup 2] [--threads 1] [--cluster cluster=cpu,ranks=4] [--json out.json]

For each plan (dp2·tp2, pp2·dp2 1f1b, pp4 zb-h1 by default; --plans NAME=PLAN ...) it compiles the training step,
runs it under mpirun with --trace (the timed steps only) and runs --llm-simulate="CLUSTER json" on the partitioned
module.  Per pipeline stage it prints the compute time of one step (the compute lane's busy time, mean over the
stage's ranks, median over steps; predicted: micro-batches x (forward + backward) + optimizer), the communication
time (the comm lane; predicted: the dp gradient sync, exposed or not), and the step time (the longest rank's span
from its first to its last instruction; predicted: the simulated step), each with the ratio measured/predicted.
--cluster-file passes a cluster JSON instead; --fit FILE fits the cpu preset's speed and per-kernel overhead to
the measured compute (least squares) and writes them as a cluster file (bench/README.md, "trace_vs_simulate.py").  Never fails on
time (STYLE.md "Benchmarks").
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Tuple

import _common as common
from overlap_cpu import derived_config

DEFAULT_PLANS = ["dp2tp2=dp=2 tp=2",
                 "pp2dp2-1f1b=dp=2 pp=2 microbatches=4 schedule=1f1b",
                 "pp4-zbh1=pp=4 microbatches=8 schedule=zb-h1"]


def load_trace(path: Path):
    """(X events, rank -> stage) of an llm-run --trace file."""
    events = json.loads(path.read_text())["traceEvents"]
    stage = {}
    for e in events:
        if e.get("ph") == "M" and e.get("name") == "process_name":
            # "rank R (stage S)"
            stage[e["pid"]] = int(e["args"]["name"].split("stage ")[1].rstrip(")"))
    return [e for e in events if e.get("ph") == "X"], stage


def measured(trace: Path) -> Dict[str, object]:
    """Per stage: median over steps of the mean over its ranks of compute and comm time (s); the median step."""
    events, stage_of = load_trace(trace)
    busy = defaultdict(float)   # (rank, step, cat) -> seconds
    span = {}                   # (rank, step) -> (first start, last end), microseconds
    for e in events:
        key = (e["pid"], e["args"]["step"])
        busy[key + (e["cat"],)] += e["dur"] * 1e-6
        a, b = span.get(key, (e["ts"], e["ts"] + e["dur"]))
        span[key] = (min(a, e["ts"]), max(b, e["ts"] + e["dur"]))
    steps = sorted({s for _, s in span})
    stages = sorted(set(stage_of.values()))
    out = {"stages": []}
    for s in stages:
        ranks = [r for r, st in stage_of.items() if st == s]
        row = {}
        for cat in ("compute", "comm", "wait"):
            row[cat] = statistics.median(statistics.mean(busy[(r, k, cat)] for r in ranks) for k in steps)
        out["stages"].append(row)
    out["step"] = statistics.median(max(span[(r, k)][1] - span[(r, k)][0] for r in stage_of) * 1e-6
                                    for k in steps)
    return out


def predicted(args, cfg_path: Path, plan: str, where: str) -> Dict[str, object]:
    """--llm-simulate's JSON for the module partitioned with `plan` on the cluster `where`."""
    bin_dir = Path(args.bin_dir)
    imp = subprocess.run([str(bin_dir / "llm-translate"), "--import-hf-config", str(cfg_path), "--batch",
                          str(args.batch), "--seq", str(args.seq)], capture_output=True, check=True)
    sim = subprocess.run([str(bin_dir / "llm-opt"), f"--llm-partition={plan}", f"--llm-simulate={where} json",
                          "-o", "/dev/null"], input=imp.stdout, capture_output=True)
    if sim.returncode:
        sys.exit(f"error: --llm-simulate failed: {sim.stderr.decode()}")
    e = json.loads(sim.stdout)
    m = int(dict(kv.split("=") for kv in e["layout"].split())["microbatches"])
    stages = [{"compute": m * (r["forward_s"] + r["backward_s"]) + e["optimizer_time_s"],
               "comm": e["dp_time_s"]} for r in e["ranks"]]
    return {"stages": stages, "step": e["step_time_s"]}


def fit_cpu_preset(args, cfg_path: Path, work: Path, results: List[dict]) -> Tuple[float, float]:
    """(compute speed, kernel overhead in us) relative to the cpu preset that fit the measured compute best.

    A stage's predicted compute is W / v + x L: W its GEMM, attention and memory time on the preset (speed
    v = 1), L its launches' time per microsecond of kernel overhead x.  Two simulations per plan (cluster
    files on the cpu preset with overhead 0 and 1 us) give W and L; least squares over every stage of every
    plan (measured = c W + x L, the 2x2 normal equations, x >= 0) gives c = 1 / v and x."""
    def sim(plan: str, us: float) -> List[float]:
        f = work / f"cpu-overhead-{us:g}us.json"
        f.write_text(json.dumps({"nodes": 1, "gpus_per_node": args.np,
                                 "device": {"base": "cpu", "kernel_overhead_us": us}}))
        return [s["compute"] for s in predicted(args, cfg_path, plan, f"cluster-file={f}")["stages"]]
    ww = wl = ll = yw = yl = 0.0
    for r in results:
        zero, one = sim(r["plan"], 0), sim(r["plan"], 1)
        for m, w, w1 in zip(r["measured"]["stages"], zero, one):
            launch, y = w1 - w, m["compute"]
            ww, wl, ll, yw, yl = ww + w * w, wl + w * launch, ll + launch * launch, yw + y * w, yl + y * launch
    det = ww * ll - wl * wl
    c, x = ((yw * ll - yl * wl) / det, (yl * ww - yw * wl) / det) if det > 0 else (0.0, -1.0)
    if x < 0:  # no launch overhead explains the data better than a negative one
        c, x = yw / ww, 0.0
    return 1 / c, x


def fit_intra_latency(args, cfg_path: Path, work: Path, results: List[dict], device: dict) -> float:
    """The intra-node latency (us) of `device` (a cluster JSON device) at which the predicted step times match
    the measured ones on geometric mean (bisection in log space: a longer latency predicts longer steps);
    NaN when none does."""
    def log_ratio(us: float) -> float:
        f = work / f"cpu-latency-{us:.4g}us.json"
        f.write_text(json.dumps({"nodes": 1, "gpus_per_node": args.np,
                                 "device": {**device, "intra_latency_us": us}}))
        return statistics.mean(math.log(r["measured"]["step"] /
                                        predicted(args, cfg_path, r["plan"], f"cluster-file={f}")["step"])
                               for r in results)
    lo, hi = 0.1, 1e5
    if log_ratio(lo) < 0 or log_ratio(hi) > 0:
        return float("nan")  # no latency matches: the compute terms alone are off
    for _ in range(30):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if log_ratio(mid) > 0 else (lo, mid)
    return math.sqrt(lo * hi)


def fit_link(results: List[dict], traces: Dict[str, Path]) -> Tuple[float, float]:
    """(GB/s, latency in us) of the intra-node link, from the measured all-reduces.

    The cost model times an all-reduce of B bytes over n ranks as 2 (n-1)/n B / bw + 2 (n-1) lat.  Per
    (collective, size) the lower decile of the measured durations (the calls whose ranks arrived together,
    not the ones that waited for a late peer) is fitted to that by least squares on the relative error."""
    rows = []
    for r in results:
        sizes = {k: int(v) for k, v in (kv.split("=") for kv in r["plan"].split()) if k in ("dp", "tp")}
        events, _ = load_trace(traces[r["name"]])
        groups = defaultdict(list)
        for e in events:
            if e["cat"] == "comm" and e["name"].startswith("all_reduce "):
                groups[(e["name"], e["args"]["bytes"])].append(e["dur"] * 1e-6)
        for (name, nbytes), durs in groups.items():
            n = sizes.get(name.split()[1], 1)
            if n > 1 and len(durs) >= 5:
                t = sorted(durs)[len(durs) // 10]
                rows.append((2 * (n - 1) / n * nbytes / t, 2 * (n - 1) / t))  # (x1, x2) / t = 1
    a11 = sum(x1 * x1 for x1, _ in rows)
    a12 = sum(x1 * x2 for x1, x2 in rows)
    a22 = sum(x2 * x2 for _, x2 in rows)
    b1, b2 = sum(x1 for x1, _ in rows), sum(x2 for _, x2 in rows)
    det = a11 * a22 - a12 * a12
    if not rows or det <= 0:
        sys.exit("error: too few all-reduces of distinct sizes to fit the link")
    inv_bw, lat = (b1 * a22 - b2 * a12) / det, (b2 * a11 - b1 * a12) / det
    return (1e-9 / inv_bw if inv_bw > 0 else float("inf")), lat * 1e6


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b > 0 else "-"


def main() -> int:
    p = common.add_common_args(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    p.add_argument("--layers", type=int, help="override the model's layer count (pp4 needs >= 4)")
    p.add_argument("--np", type=int, default=4, help="ranks (default 4)")
    p.add_argument("--plans", nargs="+", default=DEFAULT_PLANS, metavar="NAME=PLAN",
                   help="--llm-partition plans to compare (default: dp2·tp2, pp2·dp2 1f1b, pp4 zb-h1)")
    p.add_argument("--cluster", default="cluster=cpu,ranks=4", help="--llm-simulate's cluster option")
    p.add_argument("--cluster-file", help="a cluster JSON for --llm-simulate instead of --cluster")
    p.add_argument("--json", help="write the measured and predicted numbers here")
    p.add_argument("--fit-link", action="store_true",
                   help="fit the intra-node link (GB/s, latency) to the measured all-reduces")
    p.add_argument("--fit", metavar="CLUSTER_JSON",
                   help="fit the cpu preset's speed and kernel overhead to the measured compute, then its "
                        "intra-node latency to the measured steps, and write them as a cluster file (rerun "
                        "with --cluster-file CLUSTER_JSON for the ratios after)")
    p.set_defaults(model="gpt2-tiny", layers=4, threads=1, batch=8, seq=64, steps=6)
    args = p.parse_args()
    if args.steps - args.warmup < 1:
        sys.exit("error: need at least one timed step (--steps > --warmup)")
    cfg_path = common.config_path(args.model)
    if not cfg_path.exists():
        sys.exit(f"error: no model config {cfg_path}")
    results, traces = [], {}
    with tempfile.TemporaryDirectory(prefix="llmir-bench-") as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.layers:
            cfg_path = derived_config(cfg_path, args.layers, work)
        env = common.thread_env(args.threads, args.openblas_coretype)
        weights, tokens = common.make_inputs(args, cfg_path, work, env)
        for entry in args.plans:
            name, plan = entry.split("=", 1)
            program, _ = common.compile_program(
                args, cfg_path, work, [f"--llm-partition={plan}", "--tfm-build-train-step",
                                       "--llm-pipeline-split", "--llm-lower-to-exec"], name)
            log, tr = work / f"{name}.jsonl", work / f"{name}.trace.json"
            cmd = ["mpirun", "--oversubscribe", "--allow-run-as-root", "-np", str(args.np),
                   *common.llm_run_cmd(args, program, weights, tokens, log, "--trace", str(tr),
                                       "--trace-steps", f"{args.warmup}:")]
            if subprocess.run(cmd, env=env).returncode:
                sys.exit(f"error: llm-run ({name}) failed")
            where = f"cluster-file={args.cluster_file}" if args.cluster_file else args.cluster
            meas, pred = measured(tr), predicted(args, cfg_path, plan, where)
            step_ms, _ = common.read_step_log(log)
            meas["step_log"] = statistics.median(step_ms[args.warmup:]) * 1e-3
            results.append({"name": name, "plan": plan, "measured": meas, "predicted": pred})
            traces[name] = tr
        link = fit_link(results, traces) if args.fit_link else None
        fitted = None
        if args.fit:
            speed, overhead = fit_cpu_preset(args, cfg_path, work, results)
            fitted = {"base": "cpu", "name": "cpu-fitted", "compute_speed": round(speed, 4),
                      "kernel_overhead_us": round(overhead, 3)}
            fitted["intra_latency_us"] = round(fit_intra_latency(args, cfg_path, work, results, fitted), 2)
            Path(args.fit).write_text(json.dumps({"nodes": 1, "gpus_per_node": args.np, "device": fitted},
                                                 indent=1) + "\n")
    print(f"\n{cfg_path.stem}, batch {args.batch} x seq {args.seq}, {args.np} CPU ranks x {args.threads} threads, "
          f"{args.steps - args.warmup} timed steps; predicted with "
          f"{args.cluster_file or args.cluster}")
    print("| plan | stage | compute ms meas / pred (ratio) | comm ms meas / pred | step ms meas / pred (ratio) |")
    print("|---|---|---|---|---|")
    for r in results:
        meas, pred = r["measured"], r["predicted"]
        for s, (ms, ps) in enumerate(zip(meas["stages"], pred["stages"])):
            step = (f"{meas['step'] * 1e3:.1f} / {pred['step'] * 1e3:.1f} ({ratio(meas['step'], pred['step'])})"
                    if s == 0 else "")
            print(f"| {r['name'] if s == 0 else ''} | {s} | {ms['compute'] * 1e3:.1f} / {ps['compute'] * 1e3:.1f} "
                  f"({ratio(ms['compute'], ps['compute'])}) | {ms['comm'] * 1e3:.1f} / {ps['comm'] * 1e3:.1f} | "
                  f"{step} |")
    steps = [r["measured"]["step"] / r["predicted"]["step"] for r in results]
    print(f"step ratio measured/predicted: geometric mean {statistics.geometric_mean(steps):.2f} "
          f"(min {min(steps):.2f}, max {max(steps):.2f})")
    if link:
        print(f"intra-node link fitted to the measured all-reduces: {link[0]:.2f} GB/s, latency {link[1]:.1f} us "
              f"(cluster JSON intra_gbps, intra_latency_us; the cpu preset's intraBandwidth, intraLatency)")
    if fitted:
        print(f"cpu preset fitted: compute_speed {fitted['compute_speed']}, kernel_overhead_us "
              f"{fitted['kernel_overhead_us']} (compute, least squares), intra_latency_us "
              f"{fitted['intra_latency_us']} (steps, geometric mean) -> {args.fit}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
