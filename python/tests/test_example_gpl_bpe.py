"""The README's end-to-end example (examples/python/train_gpl_bpe.py): BPE shards of the GPL-3 text, 300 steps
with warm-up + cosine + clipping + eval every 50, the loss plot, the Hugging Face export and greedy generation
from it. The script exits 1 unless the held-out loss fell."""

import os
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
