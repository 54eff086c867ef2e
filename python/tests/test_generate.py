"""Text generation end to end: llm-translate --inference (prefill + decode over a
KV cache) -> llm-opt --llm-partition -> program file -> llm-run --generate,
token for token against the PyTorch reference's greedy decode (full recompute,
no cache) on the same weights.

Needs the built tools (build/bin, or $LLMIR_BUILD_DIR/bin).
"""

import shutil

import numpy as np
import pytest

from conftest import model_path

torch = pytest.importorskip("torch")

from llmir import config, reference, safetensors  # noqa: E402
from llmir.weights import random_weights  # noqa: E402

# The built tools (and the skip / LLMIR_REQUIRE_TOOLS policy) as in test_e2e_cpu.
from test_e2e_cpu import run, tool  # noqa: E402

BATCH, MAX_SEQ, PROMPT_LEN, NEW = 4, 32, 12, 16
PAD = 255  # a real token id: padding is recognised only at the end of a row
# Different lengths in one batch (the longest fills the prompt width).
PROMPTS = [[5, 9, 200, 3, 17], [1], list(range(40, 52)), [250, 4, 4, 8, 99, 7, 7]]
MPIRUN = ["mpirun", "--oversubscribe", "--allow-run-as-root"]
LAYOUTS = {"1": (1, 1, 1), "tp2": (1, 2, 1), "dp2": (2, 1, 1), "tp2dp2": (2, 2, 1),
           "pp2": (1, 1, 2), "pp2tp2": (1, 2, 2), "pp2dp2": (2, 1, 2)}


def compile_inference(cfg_path, out, dp=1, tp=1, batch=BATCH, pp=1, cp=1, prompt_len=PROMPT_LEN):
    imp = run([tool("llm-translate"), "--import-hf-config", cfg_path, "--inference",
               "--batch", str(batch), "--max-seq", str(MAX_SEQ), "--prompt-len", str(prompt_len)])
    assert imp.returncode == 0, imp.stderr
    low = run([tool("llm-opt"), f"--llm-partition=dp={dp} tp={tp} pp={pp} cp={cp}", "--llm-pipeline-split",
               "--llm-lower-to-exec"], input=imp.stdout)
    assert low.returncode == 0, low.stderr
    exp = run([tool("llm-translate"), "--export-program", "-o", str(out)], input=low.stdout)
    assert exp.returncode == 0, exp.stderr
    return out


def prompt_file(path, prompts, width=PROMPT_LEN, pad=PAD):
    arr = np.full((len(prompts), width), pad, dtype=np.int64)
    for i, p in enumerate(prompts):
        arr[i, :len(p)] = p
    np.save(path, arr)
    return path


def generate(prog, weights, prompts, ranks=1, *extra):
    launch = MPIRUN + ["-np", str(ranks)] if ranks > 1 else []
    return run(launch + [tool("llm-run"), str(prog), "--weights", str(weights), "--generate",
                         "--prompt", str(prompts), "--max-new-tokens", str(NEW), *extra])


def assert_clean_error(res, *needles):
    assert res.returncode != 0
    assert "error:" in res.stderr
    for n in needles:
        assert n in res.stderr, res.stderr
    for crash in ("Segmentation", "Aborted", "core dumped", "terminate called"):
        assert crash not in res.stderr, res.stderr


@pytest.fixture(scope="module", params=["gpt2-tiny", "llama-tiny"])
def model(request, tmp_path_factory):
    name = request.param
    cfg = config.load_config(model_path(name))
    d = tmp_path_factory.mktemp(name)
    weights = d / "w.safetensors"
    safetensors.save_file(random_weights(cfg, seed=3), str(weights))
    params = reference.load_params(cfg, str(weights))
    return name, cfg, weights, params, d


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_greedy_generation_matches_reference(model, layout, tmp_path):
    name, cfg, weights, params, _ = model
    dp, tp, pp = LAYOUTS[layout]
    if dp * tp * pp > 1 and shutil.which("mpirun") is None:
        pytest.skip("mpirun not installed")
    prog = compile_inference(model_path(name), tmp_path / "g.llmir", dp, tp, pp=pp)
    prompts = prompt_file(tmp_path / "p.npy", PROMPTS)
    out = tmp_path / "out.npy"
    res = generate(prog, weights, prompts, dp * tp * pp, "--pad-id", str(PAD), "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "prefill:" in res.stderr and "decode:" in res.stderr and "tokens/s" in res.stderr
    expected = reference.generate(cfg, params, PROMPTS, NEW)
    assert np.load(out).tolist() == expected


def test_lengths_file_and_eos(model, tmp_path):
    """--lengths instead of a pad id; a sequence that emits --eos-id stops (padded
    after it) while the others continue."""
    name, cfg, weights, params, _ = model
    prog = compile_inference(model_path(name), tmp_path / "g.llmir")
    greedy = reference.generate(cfg, params, PROMPTS, NEW)
    eos = greedy[0][3]  # sequence 0 stops at its 4th token
    expected = reference.generate(cfg, params, PROMPTS, NEW, eos_id=eos, pad_id=0)
    prompts = prompt_file(tmp_path / "p.npy", PROMPTS, pad=-1)
    lengths = tmp_path / "l.npy"
    np.save(lengths, np.array([len(p) for p in PROMPTS], dtype=np.int32))
    out = tmp_path / "out.npy"
    res = generate(prog, weights, prompts, 1, "--lengths", str(lengths), "--eos-id", str(eos),
                   "--pad-id", "0", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert np.load(out).tolist() == expected
    assert expected[0][4:] == [0] * (NEW - 4)


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed")
def test_sampling_is_seeded_and_layout_independent(tmp_path):
    name = "llama-tiny"
    cfg = config.load_config(model_path(name))
    weights = tmp_path / "w.safetensors"
    safetensors.save_file(random_weights(cfg, seed=5), str(weights))
    prompts = prompt_file(tmp_path / "p.npy", PROMPTS)
    outs = []
    for i, (dp, tp, seed) in enumerate([(1, 1, 7), (2, 2, 7), (1, 1, 8)]):
        prog = compile_inference(model_path(name), tmp_path / f"g{i}.llmir", dp, tp)
        out = tmp_path / f"o{i}.npy"
        res = generate(prog, weights, prompts, dp * tp, "--pad-id", str(PAD), "--temperature",
                       "1.5", "--top-k", "50", "--top-p", "0.95", "--seed", str(seed), "--out", str(out))
        assert res.returncode == 0, res.stderr
        outs.append(np.load(out).tolist())
    assert outs[0] == outs[1]
    assert outs[0] != outs[2]
    greedy = reference.generate(cfg, reference.load_params(cfg, str(weights)), PROMPTS, NEW)
    assert outs[0] != greedy


def test_generation_errors(model, tmp_path):
    name, cfg, weights, _, d = model
    prog = compile_inference(model_path(name), tmp_path / "g.llmir")
    # A prompt longer than the compiled prompt width / the cache.
    long_prompt = prompt_file(tmp_path / "long.npy", [list(range(1, 31))] + PROMPTS[1:], width=30)
    assert_clean_error(generate(prog, weights, long_prompt, 1, "--pad-id", str(PAD)),
                       "prompt 0 is too long", "--prompt-len")
    fits_width = prompt_file(tmp_path / "fit.npy", [list(range(1, 13))] + PROMPTS[1:])
    res = run([tool("llm-run"), str(prog), "--weights", str(weights), "--generate", "--prompt",
               str(fits_width), "--pad-id", str(PAD), "--max-new-tokens", "30"])
    assert_clean_error(res, "prompt 0 is too long", "exceed --max-seq 32")
    # Ids outside the vocabulary.
    bad = prompt_file(tmp_path / "bad.npy", [[5, cfg.vocab_size + 3]] + PROMPTS[1:])
    assert_clean_error(generate(prog, weights, bad, 1, "--pad-id", str(PAD)),
                       "prompt 0, position 1: token id", "outside the vocabulary [0, 256)")
    neg = prompt_file(tmp_path / "neg.npy", [[5, -2, 4]] + PROMPTS[1:])
    assert_clean_error(generate(prog, weights, neg, 1, "--pad-id", str(PAD)), "outside the vocabulary")
    # Batch mismatch.
    three = prompt_file(tmp_path / "three.npy", PROMPTS[:3])
    assert_clean_error(generate(prog, weights, three, 1, "--pad-id", str(PAD)),
                       "batch mismatch", "--batch 4")
    # A 1-D prompt file, an empty prompt, bad options.
    flat = tmp_path / "flat.npy"
    np.save(flat, np.arange(5))
    assert_clean_error(generate(prog, weights, flat), "must be a 2-D array")
    empty = prompt_file(tmp_path / "empty.npy", [[]] + PROMPTS[1:])
    assert_clean_error(generate(prog, weights, empty, 1, "--pad-id", str(PAD)), "prompt 0 has length 0")
    assert_clean_error(run([tool("llm-run"), str(prog), "--weights", str(weights), "--generate"]),
                       "--generate needs --prompt")
    assert_clean_error(generate(prog, weights, flat, 1, "--top-p", "0"), "option --top-p")
    # An inference program run without --generate.
    tokens = tmp_path / "t.npy"
    np.save(tokens, np.arange(100, dtype=np.int32))
    assert_clean_error(run([tool("llm-run"), str(prog), "--weights", str(weights), "--data", str(tokens)]),
                       "is an inference program", "--generate")
    # A training/evaluation program has no prefill/decode entries.
    imp = run([tool("llm-translate"), "--import-hf-config", model_path(name), "--batch", "4",
               "--seq", "8"])
    low = run([tool("llm-opt"), "--llm-lower-to-exec"], input=imp.stdout)
    fwd = tmp_path / "fwd.llmir"
    assert run([tool("llm-translate"), "--export-program", "-o", str(fwd)],
               input=low.stdout).returncode == 0
    assert_clean_error(generate(fwd, weights, prompt_file(tmp_path / "p.npy", PROMPTS), 1),
                       "'prefill' and 'decode' entry points")


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed")
def test_padded_vocab_tp2(tmp_path):
    """A vocabulary tp does not divide (257 over 2): the LM head is padded with
    zero rows, the gathered logits carry a padding column that llm-run ignores."""
    import json

    cfg_json = json.load(open(model_path("llama-tiny")))
    cfg_json["vocab_size"] = 257
    cfg_path = tmp_path / "odd.json"
    cfg_path.write_text(json.dumps(cfg_json))
    cfg = config.load_config(str(cfg_path))
    weights = tmp_path / "w.safetensors"
    safetensors.save_file(random_weights(cfg, seed=3), str(weights))
    prompts = [[5, 9, 256, 3, 17], [1, 2], [77] * 9, [250, 4, 4, 8]]
    prog = compile_inference(str(cfg_path), tmp_path / "g.llmir", 1, 2)
    out = tmp_path / "out.npy"
    res = generate(prog, weights, prompt_file(tmp_path / "p.npy", prompts, pad=0), 2,
                   "--pad-id", "0", "--out", str(out))
    assert res.returncode == 0, res.stderr
    expected = reference.generate(cfg, reference.load_params(cfg, str(weights)), prompts, NEW)
    assert np.load(out).tolist() == expected


def test_python_generate(model, tmp_path):
    """llmir.compile(..., inference=True) + Program.generate: the same tokens
    as the reference, from Python, on dp=2 ranks."""
    import llmir

    if shutil.which("mpirun") is None:
        pytest.skip("mpirun not installed")
    name, cfg, weights, params, _ = model
    prog = llmir.compile(cfg, llmir.Plan(dp=2), batch=BATCH, inference=True, max_seq=MAX_SEQ,
                         prompt_len=PROMPT_LEN, workdir=str(tmp_path / "p"))
    arr = np.full((len(PROMPTS), PROMPT_LEN), PAD, dtype=np.int64)
    for i, p in enumerate(PROMPTS):
        arr[i, :len(p)] = p
    ids = prog.generate(str(weights), arr, pad_id=PAD, max_new_tokens=NEW)
    assert ids.tolist() == reference.generate(cfg, params, PROMPTS, NEW)
    with pytest.raises(ValueError, match="inference=True"):
        llmir.compile(cfg, llmir.Plan(), batch=BATCH, inference=True, train=True)
