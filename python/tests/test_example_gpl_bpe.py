"""The README's end-to-end example (examples/python/train_gpl_bpe.py): BPE shards of the GPL-3 text, 300 steps
with warm-up + cosine + clipping + eval every 50, the loss plot, the Hugging Face export and greedy generation
from it; then examples/python/finetune_hf.py fine-tunes that exported directory on README.md. Both scripts exit 1
unless their loss fell."""

import math
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

pytest.importorskip("tokenizers")
pytest.importorskip("matplotlib")

import llmir  # noqa: E402

CORPUS = "/usr/share/common-licenses/GPL-3"


@pytest.mark.skipif(not os.path.exists(CORPUS), reason="no GPL-3 text")
def test_readme_example_trains_plots_exports_and_generates(tmp_path):
    try:
        llmir.tool_path("llm-run")
    except FileNotFoundError:
        pytest.skip("LLMIR tools not built")
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, os.path.join(REPO, "examples", "python", "train_gpl_bpe.py"),
                          "--out", str(out)], capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count(" eval ") == 6 and "greedy: The GNU General Public License" in res.stdout
    png = (out / "loss.png").read_bytes()
    assert png[:4] == b"\x89PNG" and len(png) > 10000
    assert sorted(os.listdir(out / "hf")) == ["config.json", "model.safetensors", "tokenizer.json"]
    cfg, params = llmir.load_hf(out / "hf")
    assert cfg.vocab_size == 512 and cfg.hidden_size == 128 and len(params) == 2 + 12 * 2 + 2

    res = subprocess.run([sys.executable, os.path.join(REPO, "examples", "python", "finetune_hf.py"),
                          "--hf", str(out / "hf"), "--text", os.path.join(REPO, "README.md"), "--out",
                          str(tmp_path / "ft"), "--steps", "30"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    # It starts from the trained weights: the first loss is well below a random model's ln(512) = 6.24.
    first = float(re.search(r"step +1  loss ([0-9.]+)", res.stdout).group(1))
    assert first < math.log(512) - 0.5, res.stdout
    _, tuned = llmir.load_hf(tmp_path / "ft" / "hf")
    assert tuned.keys() == params.keys() and any((tuned[n] != params[n]).any() for n in params)
