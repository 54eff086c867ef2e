"""The collectives a compiled training step emits equal the analytic minimum
of Megatron-LM's schemes, count and bytes, for tp, sp, dp and ZeRO-1/2/3 (ZeRO-2 moves the same bytes as ZeRO-1,
earlier: test_zero2_frees_gradients_during_the_backward).

Bytes are what each rank contributes (the operand of the collective), as
printed by `llm-opt --llm-comm-report`.
"""

import json
import os
import re
import subprocess

import pytest

from conftest import REPO, model_path
from llmir import config
from llmir.weights import param_shapes

BIN = os.path.join(os.environ.get("LLMIR_BUILD_DIR", os.path.join(REPO, "build")), "bin")
if not os.path.exists(os.path.join(BIN, "llm-opt")):
    if os.environ.get("LLMIR_REQUIRE_TOOLS") == "1":
        raise RuntimeError(f"LLMIR tools not built in {BIN}")
    pytest.skip(f"LLMIR tools not built in {BIN}", allow_module_level=True)

B, S, F32 = 4, 8, 4


def comm_totals(model, plan, split=False):
    """Collectives per (kind, axis): (count, bytes), summed over the program's functions (pipeline ranks)."""
    imp = subprocess.run([os.path.join(BIN, "llm-translate"), "--import-hf-config",
                          model_path(model), "--batch", str(B), "--seq", str(S)],
                         capture_output=True, text=True, check=True)
    rep = subprocess.run([os.path.join(BIN, "llm-opt"), f"--llm-partition={plan}", "--tfm-build-train-step"] +
                         (["--llm-pipeline-split"] if split else []) + ["--llm-comm-report", "-o", os.devnull],
                         input=imp.stdout, capture_output=True, text=True)
    assert rep.returncode == 0, rep.stderr
    totals = {}
    for m in re.finditer(r"total: (\S+) (\S+) (\d+) ops (\d+) B", rep.stdout):
        count, size = totals.get((m.group(1), m.group(2)), (0, 0))
        totals[(m.group(1), m.group(2))] = (count + int(m.group(3)), size + int(m.group(4)))
    return totals


def local_param_sizes(cfg, tp):
    """Bytes of one rank's shard of each parameter under Megatron's tp rules."""
    sizes = {}
    for name, shape in param_shapes(cfg).items():
        n = 1
        for d in shape:
            n *= d
        split = len(shape) == 2 or name.endswith(("c_attn.bias", "c_fc.bias"))
        if name in ("wpe.weight",) or "ln" in name or "norm" in name:
            split = False
        if name.endswith("c_proj.bias") or name.endswith("o_proj.bias"):
            split = False
        sizes[name] = (n // tp if split else n) * F32
    return sizes


def local_param_bytes(cfg, tp):
    """Bytes of one rank's parameter shards under Megatron's tp rules."""
    return sum(local_param_sizes(cfg, tp).values())


def zero3_gathers(cfg, name, reshard_after_forward=True):
    """All-gathers of one ZeRO-3 parameter per step: one per section of the step that reads it. A layer's
    forward and backward are two sections, and the backward reads weights and norm gains but not biases; the
    embedding's backward does not read the table, but a tied head's section does; the final norm and an untied
    head are read in one section (forward, loss, backward)."""
    if not reshard_after_forward:
        return 1
    if re.search(r"(^|\.)(h|layers)\.\d+\.", name):
        return 2 if name.endswith("weight") else 1
    tied_table = cfg.tie_word_embeddings and name in ("wte.weight", "model.embed_tokens.weight")
    return 2 if tied_table else 1


@pytest.mark.parametrize("model", ["gpt2-tiny", "llama-tiny"])
@pytest.mark.parametrize("dp,tp,sp,zero", [(1, 2, False, 0), (1, 2, True, 0),
                                           (2, 1, False, 0), (2, 1, False, 1),
                                           (2, 2, False, 0), (2, 2, True, 1),
                                           (2, 1, False, 2), (2, 2, True, 2),
                                           (2, 1, False, 3), (2, 2, True, 3)])
def test_collectives_equal_the_analytic_minimum(model, dp, tp, sp, zero):
    cfg = config.load_config(model_path(model))
    L, H = cfg.num_layers, cfg.hidden_size
    tokens = B // dp * S                      # per rank
    act = tokens * H * F32                    # one activation [B/dp, S, H]
    rows = tokens * F32                       # one value per token
    expect = {}
    if tp > 1 and not sp:
        # fwd: embedding g + 2 per layer (row-parallel g); CE: sum-exp, target.
        # bwd: 2 per layer (Megatron f) + the LM head's f.
        expect[("all_reduce", "tp")] = (4 * L + 4, (4 * L + 2) * act + 2 * rows)
        expect[("all_reduce(max)", "tp")] = (1, rows)
    if tp > 1 and sp:
        # gathers before the 2L column-parallel blocks and the LM head (fwd),
        # and as duals of the 2L + 1 reduce-scatters (bwd); operands: act / tp.
        expect[("all_gather", "tp")] = (2 * (2 * L + 1), 2 * (2 * L + 1) * act // tp)
        expect[("reduce_scatter", "tp")] = (2 * (2 * L + 1), 2 * (2 * L + 1) * act)
        expect[("all_reduce(max)", "tp")] = (1, rows)
        # CE (2) + gradients of the parameters used on sequence blocks.
        sp_params = [n for n, shape in param_shapes(cfg).items()
                     if "ln" in n or "norm" in n or n == "wpe.weight"
                     or n.endswith(("attn.c_proj.bias", "mlp.c_proj.bias"))]
        sp_bytes = sum(F32 * __import__("math").prod(param_shapes(cfg)[n])
                       for n in sp_params)
        # ZeRO-2 reduce-scatters over dp first, so the tp sum covers this rank's 1/dp chunk only.
        if zero >= 2 and dp > 1:
            sp_bytes //= dp
        expect[("all_reduce", "tp")] = (2 + len(sp_params), 2 * rows + sp_bytes)
    n_params = len(param_shapes(cfg))
    pbytes = local_param_bytes(cfg, tp)
    if dp > 1:
        if zero:
            expect[("all_reduce", "dp")] = (1, F32)                # the loss
            expect[("reduce_scatter", "dp")] = (n_params, pbytes)  # gradients
            expect[("all_gather", "dp")] = (n_params, pbytes // dp)  # parameters
            if zero == 3:  # gathered before use instead of after the update; operands are the chunks
                sizes = local_param_sizes(cfg, tp)
                expect[("all_gather", "dp")] = (sum(zero3_gathers(cfg, n) for n in sizes),
                                                sum(zero3_gathers(cfg, n) * b // dp for n, b in sizes.items()))
        else:
            # The loss, and all gradients in one bucket (they fit in 25 MiB).
            expect[("all_reduce", "dp")] = (2, F32 + pbytes)
    assert comm_totals(model, f"dp={dp} tp={tp} sp={str(sp).lower()} zero={zero}") == expect


@pytest.mark.parametrize("model", ["gpt2-tiny", "llama-tiny"])
def test_zero3_without_resharding_gathers_each_parameter_once(model):
    cfg = config.load_config(model_path(model))
    totals = comm_totals(model, "dp=2 tp=2 zero=3 reshard-after-forward=false")
    sizes = local_param_sizes(cfg, 2)
    assert totals[("all_gather", "dp")] == (len(sizes), sum(sizes.values()) // 2)


@pytest.mark.parametrize("model", ["gpt2-tiny", "llama-tiny"])
@pytest.mark.parametrize("reshard,gather", [(True, "microbatch"), (False, "microbatch"), (True, "step")])
def test_zero3_pipeline_gathers_per_microbatch(model, reshard, gather):
    """pp2 dp2 with 2 micro-batches: each stage gathers its parameters per micro-batch as the single step does
    (the stages split the parameters; a tied table lives on the first and the last), once per micro-batch
    without resharding, or once per step (zero3-gather=step)."""
    cfg = config.load_config(model_path(model))
    totals = comm_totals(model, f"pp=2 dp=2 microbatches=2 zero=3 reshard-after-forward={str(reshard).lower()} "
                                f"zero3-gather={gather}", split=True)
    sizes = local_param_sizes(cfg, 1)
    once = gather == "step" or not reshard
    gathers = {n: (1 if gather == "step" else 2) * zero3_gathers(cfg, n, not once) for n in sizes}
    if cfg.tie_word_embeddings and once:
        # the first and the last stage each hold (and gather) the tied table
        gathers["wte.weight"] += 1 if gather == "step" else 2
    expect = (sum(gathers.values()), sum(g * sizes[n] // 2 for n, g in gathers.items()))
    assert totals[("all_gather", "dp")] == expect


def exec_program(model, plan):
    imp = subprocess.run([os.path.join(BIN, "llm-translate"), "--import-hf-config", model_path(model),
                          "--batch", str(B), "--seq", str(S)], capture_output=True, text=True, check=True)
    low = subprocess.run([os.path.join(BIN, "llm-opt"), f"--llm-partition={plan}", "--tfm-build-train-step",
                          "--llm-lower-to-exec"], input=imp.stdout, capture_output=True, text=True)
    assert low.returncode == 0, low.stderr
    return low.stdout


@pytest.mark.parametrize("model", ["gpt2-tiny", "llama-tiny"])
def test_zero2_frees_gradients_during_the_backward(model):
    """ZeRO-1 keeps every full gradient until the optimizer; ZeRO-2 reduce-scatters each one as soon as it is
    final (the first reduce-scatter comes before the embedding's gradient, the backward's last kernel), so the
    planned temporaries shrink by about (1 - 1/dp) of the gradients."""
    peaks = {}
    for zero in (1, 2):
        ir = exec_program(model, f"dp=2 zero={zero}")
        first_rs = ir.index("exec.reduce_scatter")
        emb_grad = ir.index('exec.kernel "embedding_grad"')
        assert (first_rs < emb_grad) == (zero == 2), zero
        peaks[zero] = int(re.search(r"temp_peak_bytes = (\d+)", ir).group(1))
    cfg = config.load_config(model_path(model))
    grads = local_param_bytes(cfg, 1)
    saved = peaks[1] - peaks[2]
    print(f"{model}: temp peak zero=1 {peaks[1]} B, zero=2 {peaks[2]} B (saves {saved} B of {grads} B of gradients)")
    assert saved >= 0.25 * grads, peaks


@pytest.mark.parametrize("model", ["gpt2-tiny", "llama-tiny"])
@pytest.mark.parametrize("tp", [1, 2])
def test_zero3_plans_parameters_divided_by_dp(model, tp):
    """ZeRO-3's exec memory plan holds 1/dp of ZeRO-2's parameter bytes per rank (the AdamW state is the same
    chunks), as --llm-memory-report predicts."""
    planned = {}
    for zero in (2, 3):
        ir = exec_program(model, f"dp=2 tp={tp} zero={zero}")
        planned[zero] = [int(re.search(rf"{key} = (\d+)", ir).group(1)) for key in ("param_bytes", "state_bytes")]
    assert planned[3] == [planned[2][0] // 2, planned[2][1]], planned
    imp = subprocess.run([os.path.join(BIN, "llm-translate"), "--import-hf-config", model_path(model),
                          "--batch", str(B), "--seq", str(S)], capture_output=True, text=True, check=True)
    rep = subprocess.run([os.path.join(BIN, "llm-opt"), f"--llm-partition=dp=2 tp={tp} zero=3",
                          "--llm-memory-report=json", "-o", os.devnull],
                         input=imp.stdout, capture_output=True, text=True)
    assert rep.returncode == 0, rep.stderr
    predicted = json.loads(rep.stdout)["ranks"][0]["param_bytes"]
    print(f"{model} tp={tp}: param bytes zero=2 {planned[2][0]}, zero=3 {planned[3][0]}, predicted {predicted:.0f}")
    assert abs(predicted - planned[3][0]) <= 0.01 * planned[3][0]

@pytest.mark.parametrize("model", ["gpt2-tiny", "llama-tiny"])
@pytest.mark.parametrize("dp,cp,tp", [(1, 2, 1), (2, 2, 1), (1, 2, 2), (1, 4, 1)])
def test_context_parallel_collectives_equal_the_analytic_minimum(model, dp, cp, tp):
    """cp: per layer K and V all-gathered over cp (forward) and their gradients
    reduce-scattered (backward); the loss summed over cp; the gradients summed
    over dp x cp at the flat all-reduce's minimum (with dp: reduce-scatter over
    cp, all-reduce of the chunk over dp, all-gather over cp)."""
    cfg = config.load_config(model_path(model))
    L, H = cfg.num_layers, cfg.hidden_size
    kv_dim = cfg.num_kv_heads * (H // cfg.num_heads)
    tokens = B // dp * S // cp                 # per rank
    act = tokens * H * F32
    rows = tokens * F32
    kv_local = tokens * kv_dim // tp * F32     # one rank's K (or V)
    expect = {}
    if tp > 1:
        expect[("all_reduce", "tp")] = (4 * L + 4, (4 * L + 2) * act + 2 * rows)
        expect[("all_reduce(max)", "tp")] = (1, rows)
    pbytes = local_param_bytes(cfg, tp)
    n = pbytes // F32
    gathers, scatters = (2 * L, 2 * L * kv_local), (2 * L, 2 * L * kv_local * cp)
    if dp == 1:
        expect[("all_reduce", "cp")] = (2, F32 + pbytes)        # the loss, the bucket
    else:
        assert n % cp == 0
        expect[("all_reduce", "cp")] = (1, F32)                 # the loss
        expect[("all_reduce", "dp")] = (2, F32 + pbytes // cp)  # the loss, the chunk
        gathers = (gathers[0] + 1, gathers[1] + pbytes // cp)
        scatters = (scatters[0] + 1, scatters[1] + pbytes)
    expect[("all_gather", "cp")] = gathers
    expect[("reduce_scatter", "cp")] = scatters
    assert comm_totals(model, f"dp={dp} cp={cp} tp={tp}") == expect
    # Per rank, dp x cp gradient sum: 2(n-1)/n of the bucket for n = dp x cp
    # ranks in a ring, the same as one flat all-reduce over all of them.
    ranks = dp * cp
    if dp > 1:
        moved = (cp - 1) / cp * pbytes + 2 * (dp - 1) / dp * pbytes / cp + (cp - 1) / cp * pbytes
        assert abs(moved - 2 * (ranks - 1) / ranks * pbytes) < 1e-6 * pbytes



def ring_transfers(model, plan):
    """The lowered training step's cp ring messages: {"send"|"recv": (count, bytes)}."""
    totals = {}
    for m in re.finditer(r'exec\.(send|recv) .*\{axis = "cp", shift = \d+ : i64\} stream 1 : '
                         r'(?:!exec\.buffer)?<([0-9x]+)xf32>', exec_program(model, plan)):
        count, size = totals.get(m.group(1), (0, 0))
        elems = 1
        for d in m.group(2).split("x"):
            elems *= int(d)
        totals[m.group(1)] = (count + 1, size + elems * F32)
    return totals


@pytest.mark.parametrize("model", ["gpt2-tiny", "llama-tiny"])
@pytest.mark.parametrize("dp,cp,tp", [(1, 2, 1), (1, 4, 1), (1, 2, 2), (2, 2, 1)])
def test_context_parallel_ring_volume_is_the_analytic_minimum(model, dp, cp, tp):
    """cp-comm=ring: per layer and rank, K and V go around the ring in cp-1
    messages each in the forward and again in the backward, and the dK and dV
    partials cp-1 hops home: 6(cp-1) messages of one rank's K (or V). The
    all-gather plan moves 4(cp-1) (two all-gathers, two reduce-scatters, each
    (cp-1) x K per rank) but keeps the gathered K and V for the backward; the
    ring sends them again instead. No K/V collective is left."""
    cfg = config.load_config(model_path(model))
    L, H = cfg.num_layers, cfg.hidden_size
    kv_local = B // dp * S // cp * cfg.num_kv_heads * (H // cfg.num_heads) // tp * F32
    plan = f"dp={dp} cp={cp} tp={tp}"
    n = 6 * (cp - 1) * L
    assert ring_transfers(model, plan + " cp-comm=ring") == {"send": (n, n * kv_local),
                                                             "recv": (n, n * kv_local)}
    colls = comm_totals(model, plan + " cp-comm=ring")
    bucket = 0 if dp == 1 else 1  # with dp: the gradient bucket's reduce-scatter and all-gather over cp
    assert colls.get(("all_gather", "cp"), (0, 0))[0] == bucket
    assert colls.get(("reduce_scatter", "cp"), (0, 0))[0] == bucket


@pytest.mark.parametrize("model", ["gpt2-tiny", "llama-tiny"])
@pytest.mark.parametrize("dp,cp,zero", [(2, 2, 1), (2, 2, 2), (2, 2, 3), (1, 2, 1), (1, 2, 3)])
def test_context_parallel_zero_collectives_equal_the_analytic_minimum(model, dp, cp, zero):
    """cp with ZeRO: K/V as without ZeRO; each gradient reduce-scattered over the ZeRO axis (dp, or cp
    without dp) and, sharded over dp, its chunk all-reduced over cp; the chunks all-gathered over the ZeRO
    axis (after the update, or before use for zero=3). Per rank that moves 2(n-1)/n of the parameters for
    n = dp x cp, as a flat reduce-scatter and all-gather over all n ranks would."""
    cfg = config.load_config(model_path(model))
    L, H = cfg.num_layers, cfg.hidden_size
    kv_local = B // dp * S // cp * cfg.num_kv_heads * (H // cfg.num_heads) * F32
    sizes = local_param_sizes(cfg, 1)
    pbytes, n_params = sum(sizes.values()), len(sizes)
    zaxis, zranks = ("dp", dp) if dp > 1 else ("cp", cp)
    gathers = (n_params, pbytes // zranks)
    if zero == 3:
        gathers = (sum(zero3_gathers(cfg, n) for n in sizes),
                   sum(zero3_gathers(cfg, n) * b // zranks for n, b in sizes.items()))
    kv = {("all_gather", "cp"): (2 * L, 2 * L * kv_local), ("reduce_scatter", "cp"): (2 * L, 2 * L * kv_local * cp)}
    expect = dict(kv)
    expect[("all_reduce", "cp")] = (1, F32)  # the loss
    if dp > 1:
        expect[("all_reduce", "dp")] = (1, F32)
        expect[("all_reduce", "cp")] = (1 + n_params, F32 + pbytes // dp)
        expect[("reduce_scatter", "dp")] = (n_params, pbytes)
        expect[("all_gather", "dp")] = gathers
    else:
        expect[("reduce_scatter", "cp")] = (kv[("reduce_scatter", "cp")][0] + n_params,
                                            kv[("reduce_scatter", "cp")][1] + pbytes)
        expect[("all_gather", "cp")] = (kv[("all_gather", "cp")][0] + gathers[0],
                                        kv[("all_gather", "cp")][1] + gathers[1])
    assert comm_totals(model, f"dp={dp} cp={cp} zero={zero}") == expect
    # Per rank (ring collectives): the gradients' and parameters' traffic in units of the parameters.
    ranks = dp * cp
    moved = (zranks - 1) / zranks + (2 * (cp - 1) / cp / dp if dp > 1 else 0) + (zranks - 1) / zranks
    assert abs(moved - 2 * (ranks - 1) / ranks) < 1e-9
