"""ZeRO-3 with pipeline stages and micro-batches (`zero3-gather=microbatch|step`): each micro-batch's
gradient reduce-scattered at once into an accumulating 1/dp chunk, or the parameters gathered once per
step and the summed gradient reduce-scattered after the last micro-batch; both train equal to
single-device PyTorch, and the memory plan holds the gradients as 1/dp chunks across micro-batches.
"""

import re
import shutil

import numpy as np
import pytest

from conftest import model_path

torch = pytest.importorskip("torch")

from test_comm_volume import comm_totals, local_param_sizes  # noqa: E402
from test_e2e_cpu import LR, RTOL, SEQ, WD, train_run  # noqa: E402
from test_pipeline_e2e import compile_pipeline  # noqa: E402
from llmir import config, reference, safetensors  # noqa: E402
from llmir.weights import random_tokens, random_weights, save_tokens  # noqa: E402

BATCH, STEPS = 8, 10


@pytest.fixture(scope="module")
def tiny(request, tmp_path_factory):
    """A tiny model's config path, weights, tokens and PyTorch's losses over STEPS AdamW steps."""
    name = request.param
    d = tmp_path_factory.mktemp(name)
    cfg = config.load_config(model_path(name))
    weights, tokens = d / "w.safetensors", d / "t.npy"
    safetensors.save_file(random_weights(cfg, seed=7), str(weights))
    save_tokens(random_tokens(cfg.vocab_size, 2000, seed=8), str(tokens))
    ref, _ = reference.train(cfg, reference.load_params(cfg, str(weights)), np.load(tokens), STEPS,
                             BATCH, SEQ, lr=LR, weight_decay=WD)
    return model_path(name), weights, tokens, ref


# Each model with both micro-batch counts and both gather options (half of the product: the suite's time).
@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed")
@pytest.mark.parametrize("tiny,microbatches,gather", [
    ("gpt2-tiny", 2, "microbatch"), ("gpt2-tiny", 4, "step"),
    ("llama-tiny", 2, "step"), ("llama-tiny", 4, "microbatch")], indirect=["tiny"])
def test_zero3_pipeline_trains_like_reference(tiny, tmp_path, microbatches, gather):
    cfg_path, weights, tokens, ref = tiny
    plan = f"pp=2 dp=2 zero=3 microbatches={microbatches} zero3-gather={gather}"
    prog, _ = compile_pipeline(cfg_path, tmp_path / "p.llmir", plan)
    ours = train_run(prog, 4, weights, tokens, STEPS, tmp_path / "log.jsonl")
    assert len(ours) == STEPS
    for step, (a, b) in enumerate(zip(ours, ref)):
        assert abs(a - b) <= RTOL * abs(b), (plan, step, a, b)
    assert ours[-1] != ours[0]


@pytest.mark.parametrize("model", ["gpt2-tiny", "llama-tiny"])
def test_zero3_microbatch_gradients_reduce_scatter_per_microbatch(model):
    """Per micro-batch: every parameter's gradient is reduce-scattered m times (its full bytes each time);
    per step: once, after the last micro-batch."""
    sizes = local_param_sizes(config.load_config(model_path(model)), 1)
    m = 2
    for gather, times in (("microbatch", m), ("step", 1)):
        totals = comm_totals(model, f"pp=2 dp=2 zero=3 microbatches={m} zero3-gather={gather}", split=True)
        # A tied table is held (and reduced) by the first and the last stage.
        tied = 2 if "wte.weight" in sizes and config.load_config(model_path(model)).tie_word_embeddings else 1
        count = len(sizes) + tied - 1
        nbytes = sum(sizes.values()) + (tied - 1) * sizes.get("wte.weight", 0)
        assert totals[("reduce_scatter", "dp")] == (times * count, times * nbytes), gather


@pytest.mark.parametrize("model", ["gpt2-tiny", "llama-tiny"])
def test_zero3_microbatch_plan_holds_gradient_chunks(model, tmp_path):
    """Gathering per step keeps each stage's full-size gradients (and gathered parameters) across the
    micro-batches; per micro-batch the gradients accumulate as 1/dp chunks, so each rank's planned
    temporaries shrink by at least (1 - 1/dp) of its stage's gradient bytes."""
    cfg = config.load_config(model_path(model))
    sizes = local_param_sizes(cfg, 1)
    peaks = {}
    for gather in ("microbatch", "step"):
        _, ir = compile_pipeline(model_path(model), tmp_path / f"{gather}.llmir",
                                 f"pp=2 dp=2 zero=3 microbatches=4 zero3-gather={gather}")
        peaks[gather] = [int(v) for v in re.findall(r"temp_peak_bytes = (\d+)", ir)]
    # Each stage holds half of the layers (and the embeddings or the head): half the layers' gradients
    # bound both stages' gradient bytes from below.
    layers = cfg.num_layers
    stage_grad = min(sum(b for n, b in sizes.items() if re.search(rf"\.{i}\.", n)) for i in range(layers))
    stage_grad *= layers // 2
    print(f"{model}: per-rank temp peaks microbatch {peaks['microbatch']}, step {peaks['step']}, "
          f"stage layer gradients >= {stage_grad} B")
    assert len(peaks["step"]) == len(peaks["microbatch"]) == 2  # one program per stage
    for mb, step in zip(peaks["microbatch"], peaks["step"]):
        assert step - mb >= (1 - 1 / 2) * stage_grad, peaks
