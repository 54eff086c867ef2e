"""Generation with a context-parallel prefill (--llm-partition cp=N): the prompt
split over cp in 2·cp zig-zag chunks, K/V all-gathered over cp for attention and
written in global position order into every cp rank's KV cache, decode replicated
over cp. Greedy tokens equal the PyTorch reference's; seeded sampling equals cp1.
The prompt-width error (--prompt-len not a multiple of 2·cp) is checked in
test/Partition/cp-inference.test.
"""

import shutil

import numpy as np
import pytest

from conftest import model_path
from test_generate import (NEW, PAD, PROMPTS, compile_inference, generate, model,  # noqa: E402,F401
                           prompt_file)

torch = pytest.importorskip("torch")

from llmir import reference  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed")

# (dp, tp, pp, cp, prompt width): the width splits into 2·cp chunks; the prompts'
# last tokens fall on both cp ranks' chunks (lengths 1, 5, 7, 12: width 12 at cp2
# puts positions 0 and 11 on rank 0, 4 and 6 on rank 1).
LAYOUTS = {"cp2": (1, 1, 1, 2, 12), "cp2tp2": (1, 2, 1, 2, 12), "cp2dp2": (2, 1, 1, 2, 12),
           "cp2pp2": (1, 1, 2, 2, 12), "cp4": (1, 1, 1, 4, 16)}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_cp_prefill_greedy_matches_reference(model, layout, tmp_path):
    name, cfg, weights, params, _ = model
    dp, tp, pp, cp, width = LAYOUTS[layout]
    prog = compile_inference(model_path(name), tmp_path / "g.llmir", dp, tp, pp=pp, cp=cp, prompt_len=width)
    prompts = prompt_file(tmp_path / "p.npy", PROMPTS, width=width)
    out = tmp_path / "out.npy"
    res = generate(prog, weights, prompts, dp * tp * pp * cp, "--pad-id", str(PAD), "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert np.load(out).tolist() == reference.generate(cfg, params, PROMPTS, NEW)


def test_cp_prefill_sampling_equals_cp1(model, tmp_path):
    name, _, weights, _, _ = model
    prompts = prompt_file(tmp_path / "p.npy", PROMPTS)
    outs = []
    for cp in (1, 2):
        prog = compile_inference(model_path(name), tmp_path / f"g{cp}.llmir", cp=cp)
        out = tmp_path / f"o{cp}.npy"
        res = generate(prog, weights, prompts, cp, "--pad-id", str(PAD), "--temperature", "1.5",
                       "--top-k", "50", "--seed", "11", "--out", str(out))
        assert res.returncode == 0, res.stderr
        outs.append(np.load(out).tolist())
    assert outs[0] == outs[1]

