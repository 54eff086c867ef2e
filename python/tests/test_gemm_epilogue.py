"""Fused GEMM epilogues (gemm_bias_gelu, gemm_dgelu_bgrad) end to end on the CPU backend.

The GPT-2 MLP's c_fc + GELU and its backward chain lower to the two fused kernels by default;
--llm-lower-to-exec=fuse-epilogues=false keeps the separate gemm, gelu_tanh, gelu_tanh_grad and sum_rows.
- the fused f32 training program follows the PyTorch reference (rel 1e-5) and the unfused one (rel 1e-6),
- the fused bf16 program follows the reference with the bf16 cast points (rel 1e-2, as test_mixed_precision.py)
  and the unfused bf16 program (rel 1e-2: the fused GELU reads the f32 pre-activation, unfused its bf16 copy),
- the fused program's temporary peak exceeds the unfused one's by at most one bias-gradient vector (the aux
  output is the saved pre-activation).
"""

import json
import re
import shutil

import pytest

torch = pytest.importorskip("torch")

from test_e2e_cpu import LR, WD, run, tool  # noqa: E402
from test_mixed_precision import tiny_model  # noqa: E402
from llmir import reference  # noqa: E402

BATCH, SEQ, STEPS = 4, 16, 6


def compile_and_train(m, compute, fuse):
    """Losses of STEPS AdamW steps of `m`'s training program on one CPU rank, and its exec IR."""
    tag = f"{compute}-{'fused' if fuse else 'unfused'}"
    prog, log = m["dir"] / f"{tag}.llmir", m["dir"] / f"{tag}.jsonl"
    imp = run([tool("llm-translate"), "--import-hf-config", str(m["cfg_path"]), "--batch", str(BATCH),
               "--seq", str(SEQ)])
    assert imp.returncode == 0, imp.stderr
    precision = [f"--llm-mixed-precision=compute={compute}"] if compute != "f32" else []
    lower = "--llm-lower-to-exec" + ("" if fuse else "=fuse-epilogues=false")
    low = run([tool("llm-opt"), *precision, "--tfm-build-train-step", lower], input=imp.stdout)
    assert low.returncode == 0, low.stderr
    exp = run([tool("llm-translate"), "--export-program", "-o", str(prog)], input=low.stdout)
    assert exp.returncode == 0, exp.stderr
    res = run([tool("llm-run"), str(prog), "--weights", str(m["weights"]), "--data", str(m["tokens"]),
               "--steps", str(STEPS), "--lr", str(LR), "--weight-decay", str(WD), "--log-json", str(log),
               "--quiet"], timeout=600)
    assert res.returncode == 0, res.stderr
    return [json.loads(line)["loss"] for line in log.read_text().splitlines()], low.stdout


def fused_kernels(ir):
    return len(re.findall(r'exec\.kernel "gemm_(bias_gelu|dgelu_bgrad)"', ir))


def temp_peak(ir):
    return int(re.search(r"temp_peak_bytes = (\d+)", ir).group(1))


def max_rel(ours, ref):
    assert len(ours) == len(ref) == STEPS
    return max(abs(a - b) / abs(b) for a, b in zip(ours, ref))


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    return tiny_model("gpt2-tiny", tmp_path_factory.mktemp("gemm-epilogue"), 21)


@pytest.mark.parametrize("compute,ref_tol,unfused_tol", [("f32", 1e-5, 1e-6), ("bf16", 1e-2, 1e-2)])
def test_fused_training_follows_reference_and_unfused(gpt2, compute, ref_tol, unfused_tol):
    fused, fused_ir = compile_and_train(gpt2, compute, True)
    unfused, unfused_ir = compile_and_train(gpt2, compute, False)
    layers = gpt2["cfg"].num_layers
    assert fused_kernels(fused_ir) == 2 * layers and fused_kernels(unfused_ir) == 0
    # The aux output is the saved pre-activation; what may grow is the one bias-gradient vector that
    # gemm_dgelu_bgrad writes before c_fc's input and weight gradients (ffn f32s).
    bias_grad = 4 * gpt2["cfg"].intermediate_size
    assert temp_peak(fused_ir) <= temp_peak(unfused_ir) + bias_grad
    ref, _ = reference.train(gpt2["cfg"], gpt2["params"], gpt2["data"], STEPS, BATCH, SEQ, lr=LR,
                             weight_decay=WD, compute=compute)
    to_ref, to_unfused = max_rel(fused, ref), max_rel(fused, unfused)
    print(f"{compute}: fused vs reference {to_ref:.2e}, fused vs unfused {to_unfused:.2e}; "
          f"losses {fused[0]:.4f} -> {fused[-1]:.4f}")
    assert to_ref <= ref_tol and to_unfused <= unfused_tol
    assert fused[-1] < fused[0]  # it trains
