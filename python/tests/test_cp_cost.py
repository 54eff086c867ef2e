"""Context parallelism in the cost model: --llm-memory-report, --llm-simulate
and --llm-auto-partition on LLaMA-2 7B at seq 8192 on 8 x H100 80 GB (the
issue's numbers), pinned as qualitative facts, not as the formula's bytes:
activations per rank shrink about ÷cp (K and V stay whole after their
all-gather), parameters are replicated over cp, ZeRO-3 keeps 1/dp of them,
the cp link is NVLink while tp·cp fits a node.
"""

import json
import os
import subprocess

import pytest

from conftest import model_path, require_tools
from llmir.driver import tool_path

require_tools()

GIB = 2 ** 30


@pytest.fixture(scope="module")
def llama7b_8k(tmp_path_factory):
    """LLaMA-2 7B (examples/models/llama2-7b.json, positions raised to 8192),
    a global batch of 8 sequences of 8192 tokens, as tfm IR."""
    work = tmp_path_factory.mktemp("llama7b")
    with open(model_path("llama2-7b")) as f:
        cfg = json.load(f)
    cfg["max_position_embeddings"] = 8192
    path = work / "llama2-7b-8k.json"
    path.write_text(json.dumps(cfg))
    out = work / "model.mlir"
    subprocess.run([tool_path("llm-translate"), "--import-hf-config", str(path), "--batch", "8",
                    "--seq", "8192", "-o", str(out)], check=True)
    return str(out)


def opt(model, option):
    res = subprocess.run([tool_path("llm-opt"), model, option, "-o", os.devnull],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return res.stdout


def report(model, layout):
    """Rank 0 of --llm-memory-report (bf16 mixed precision, flash attention) on an H100 80 GB;
    every layout runs micro-batches of one sequence, so each rank holds 8192 tokens per micro-batch
    at cp=1 (8192 / cp with cp)."""
    out = json.loads(opt(model, f"--llm-memory-report=layout={layout.replace(' ', ',')} "
                                f"style=megatron-flash gpu=h100-80g json"))
    rank = out["ranks"][0]
    rank["fits"] = out["fits"]
    return rank


def test_cp_divides_activations_not_parameters(llama7b_8k):
    one = report(llama7b_8k, "microbatches=8")
    act = {cp: report(llama7b_8k, f"cp={cp} microbatches=8")["activation_bytes"] for cp in (2, 4, 8)}
    act[1] = one["activation_bytes"]
    print({cp: f"{a / GIB:.2f} GiB" for cp, a in sorted(act.items())})
    # ÷cp for every tensor but K and V, which the attention keeps whole (~11% of a LLaMA layer's).
    for cp in (2, 4, 8):
        assert 1 / cp < act[cp] / act[1] < 1 / cp + 0.12, act
    cp8 = report(llama7b_8k, "cp=8 microbatches=8")
    for key in ("param_bytes", "grad_bytes", "optimizer_bytes"):
        assert cp8[key] == one[key], key  # replicated over cp, like over dp


def test_zero3_divides_parameters_by_dp_or_cp(llama7b_8k):
    dp8 = report(llama7b_8k, "dp=8")
    for layout, shards in (("dp=8 zero=3", 8), ("cp=8 zero=3 microbatches=8", 8),
                           ("dp=4 cp=2 zero=3 microbatches=2", 4)):
        r = report(llama7b_8k, layout)
        assert abs(r["param_bytes"] * shards / dp8["param_bytes"] - 1) < 0.01, layout
        assert abs(r["optimizer_bytes"] * shards / dp8["optimizer_bytes"] - 1) < 0.01, layout


def test_what_fits_on_80_gb(llama7b_8k):
    """Plain dp (and plain cp) replicate 6.7B parameters with their AdamW
    state: more than 80 GB; ZeRO-3 over dp or over cp fits."""
    assert not report(llama7b_8k, "dp=8")["fits"]
    assert not report(llama7b_8k, "cp=8 microbatches=8")["fits"]
    assert report(llama7b_8k, "dp=8 zero=3")["fits"]
    assert report(llama7b_8k, "cp=8 zero=3 microbatches=8")["fits"]
    assert report(llama7b_8k, "cp=4 tp=2 microbatches=8")["fits"]


def test_simulate_prices_the_cp_link(llama7b_8k):
    """The K/V exchanges of cp=4 over ranks tp=2 apart: NVLink on nodes of 8,
    the network on nodes of 4 (tp·cp = 8 spans two)."""
    def sim(cluster):
        return json.loads(opt(llama7b_8k, f"--llm-simulate=cluster={cluster} layout=cp=4,tp=2,microbatches=8 json"))
    intra = sim("nodes=1,gpus-per-node=8,gpu=h100-80g")
    inter = sim("nodes=2,gpus-per-node=4,gpu=h100-80g")
    assert "cp=4" in intra["layout"]
    assert 0 < intra["cp_comm_time_s"] < inter["cp_comm_time_s"]
    assert intra["step_time_s"] < inter["step_time_s"]
    text = opt(llama7b_8k, "--llm-simulate=cluster=nodes=1,gpu=h100-80g layout=cp=4,tp=2,microbatches=8")
    assert "cp=4: 2048 tokens per rank; K/V all-gather and dK/dV reduce-scatter" in text


def test_planner_searches_cp_for_llama7b(llama7b_8k):
    """--llm-auto-partition on one node of 8 H100: cp layouts are among those
    searched and some fit; max-cp=1 searches fewer; the pick fits."""
    def plan(extra=""):
        return json.loads(opt(llama7b_8k, "--llm-auto-partition=cluster=nodes=1,gpu=h100-80g apply=false "
                                          f"json top-k=400 {extra}"))
    full, nocp = plan(), plan("max-cp=1")
    print("planner picks:", full["top"][0]["layout"], f"{full['top'][0]['step_time_s']:.3f} s")
    assert full["evaluated"] > nocp["evaluated"]
    assert any(" cp=" in e["layout"] for e in full["top"])
    assert not any(" cp=" in e["layout"] for e in nocp["top"])
    assert full["top"][0]["peak_memory_bytes"] <= full["usable_bytes"]
