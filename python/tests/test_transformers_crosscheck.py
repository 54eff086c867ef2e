"""Runs crosscheck_transformers.py (our reference, safetensors and Hugging Face directories against the real
`transformers` 4.36 and `safetensors` packages) when they are installed where scripts/common.sh puts them:
$LLMIR_DEPS_PREFIX/transformers (default ~/.cache/llmir/deps/transformers), kept out of the system Python because
that transformers needs an older `tokenizers` than llmir.prepare_data's. Skipped without them."""

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
DEPS = os.path.join(os.environ.get("LLMIR_DEPS_PREFIX", os.path.expanduser("~/.cache/llmir/deps")), "transformers")

pytestmark = pytest.mark.skipif(not os.path.isdir(os.path.join(DEPS, "transformers")),
                                reason=f"transformers not installed in {DEPS} (scripts/common.sh installs it)")


def test_reference_and_hf_directories_match_transformers():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([DEPS, os.path.dirname(HERE)]))
    res = subprocess.run([sys.executable, os.path.join(HERE, "crosscheck_transformers.py")], env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout
    assert "safetensors: cross-read ok=True, bf16 ok=True" in out, out
    assert "safetensors: byte-identical F32 file: True" in out, out
    # Every variant's save_hf and save_pretrained directories, and llm-run --export-hf for the ones the compiler
    # takes (GPT-2 tied, three LLaMA variants), load with equal logits (the script's exit code checks <= 1e-5).
    assert out.count("save_hf->from_pretrained") == 6, out
    assert out.count("llm-run --export-hf->from_pretrained") >= 4, out
