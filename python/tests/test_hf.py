"""Hugging Face model directories: llmir.hf.save_hf/load_hf follow save_pretrained's conventions (names, shapes,
config keys, shards + index), llm-run --weights DIR reads them (single or sharded, F32/BF16/F16, GPT-2's
`transformer.` prefix or none) and --export-hf DIR writes one back with equal tensors; bad directories and options
get clear errors. transformers itself is only used by crosscheck_transformers.py (GPU machine)."""

import json

import numpy as np
import pytest

from conftest import model_path
from test_e2e_cpu import compile_model, run, tool
from llmir import safetensors as st
from llmir.config import load_config
from llmir.hf import load_hf, save_hf
from llmir.weights import random_tokens, random_weights, save_tokens

BATCH = 2


@pytest.fixture(scope="module", params=["gpt2-tiny", "llama-tiny"])
def setup(request, tmp_path_factory):
    name = request.param
    d = tmp_path_factory.mktemp("hf_" + name)
    cfg = load_config(model_path(name))
    save_tokens(random_tokens(cfg.vocab_size, 400, seed=5), d / "t.npy")
    prog = compile_model(model_path(name), d / "train.llmir", train=True, batch=BATCH)
    return d, cfg, prog


def stored_names(d):
    names = {}
    for f in sorted(d.glob("*.safetensors")):
        infos, _ = st.read_header(f)
        names.update((n, (i.dtype, tuple(i.shape))) for n, i in infos.items())
    return names


def bf16_round(x):
    return st.BF16.from_float(x).to_float32()


def test_save_hf_follows_save_pretrained(tmp_path, gpt2_tiny, llama_tiny):
    g = save_hf(tmp_path / "g", gpt2_tiny, random_weights(gpt2_tiny))
    names = stored_names(tmp_path / "g")
    h, inner = gpt2_tiny.hidden_size, gpt2_tiny.intermediate_size
    # GPT2LMHeadModel: `transformer.` prefix, Conv1D weights [in, out], tied head not stored.
    assert names["transformer.h.0.attn.c_attn.weight"] == ("F32", (h, 3 * h))
    assert names["transformer.h.1.mlp.c_proj.weight"] == ("F32", (inner, h))
    assert names["transformer.wte.weight"] == ("F32", (gpt2_tiny.vocab_size, h))
    assert "lm_head.weight" not in names and not any(n.startswith("h.") for n in names)
    config = json.loads((tmp_path / "g" / "config.json").read_text())
    assert config["architectures"] == ["GPT2LMHeadModel"] and config["torch_dtype"] == "float32"
    for key in ("model_type", "vocab_size", "n_embd", "n_layer", "n_head", "n_positions", "layer_norm_epsilon",
                "activation_function"):
        assert key in config, key
    assert g == str(tmp_path / "g")

    save_hf(tmp_path / "l", llama_tiny, random_weights(llama_tiny), dtype="f16")
    names = stored_names(tmp_path / "l")
    c = llama_tiny
    assert names["model.layers.0.self_attn.k_proj.weight"] == ("F16", (c.num_kv_heads * c.head_dim, c.hidden_size))
    assert names["model.layers.0.mlp.down_proj.weight"] == ("F16", (c.hidden_size, c.intermediate_size))
    assert ("lm_head.weight" in names) == (not c.tie_word_embeddings)
    config = json.loads((tmp_path / "l" / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["torch_dtype"] == "float16"
    for key in ("num_hidden_layers", "num_attention_heads", "num_key_value_heads", "rms_norm_eps", "rope_theta",
                "intermediate_size", "tie_word_embeddings"):
        assert key in config, key


@pytest.mark.parametrize("dtype", ["f32", "bf16", "f16"])
def test_python_round_trip_sharded(tmp_path, gpt2_tiny, dtype):
    w = random_weights(gpt2_tiny, seed=2)
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "tokenizer.json").write_text('{"model": {}}')
    save_hf(tmp_path / "hf", gpt2_tiny, w, dtype=dtype, max_shard_bytes=60000,
            tokenizer_from=tmp_path / "tok")
    index = json.loads((tmp_path / "hf" / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    assert (tmp_path / "hf" / "tokenizer.json").read_text() == '{"model": {}}'
    cfg, params = load_hf(tmp_path / "hf")
    assert cfg == gpt2_tiny and list(params) == list(w)
    rounded = {"f32": lambda x: x, "bf16": bf16_round, "f16": lambda x: x.astype(np.float16)}[dtype]
    for n in w:
        assert np.array_equal(params[n], rounded(w[n])), n


def export(setup, weights, out, *extra):
    d, cfg, prog = setup
    return run([tool("llm-run"), str(prog), "--weights", str(weights), "--data", str(d / "t.npy"),
                "--steps", "0", "--export-hf", str(out), "--quiet", *extra])


@pytest.mark.parametrize("dtype,shard", [("bf16", 40000), ("f16", None), ("f32", 30000)])
def test_llm_run_reads_and_exports_hf_dirs(setup, tmp_path, dtype, shard):
    d, cfg, prog = setup
    w = random_weights(cfg, seed=7)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "merges.txt").write_text("#version: 0.2\n")
    save_hf(tmp_path / "src", cfg, w, dtype=dtype, max_shard_bytes=shard, tokenizer_from=None)
    res = export(setup, tmp_path / "src", tmp_path / "out", "--export-dtype", "f32")
    assert res.returncode == 0, res.stderr
    # Same names, shapes and values as the input (F32 now), config.json with the input's keys.
    want = {n: ("F32", s) for n, (_, s) in stored_names(tmp_path / "src").items()}
    assert stored_names(tmp_path / "out") == want
    _, got = load_hf(tmp_path / "out")
    _, src = load_hf(tmp_path / "src")
    for n in w:
        assert np.array_equal(got[n], src[n].astype(np.float32)), n
    src_cfg = json.loads((tmp_path / "src" / "config.json").read_text())
    out_cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert out_cfg == dict(src_cfg, torch_dtype="float32")
    assert (tmp_path / "out" / "merges.txt").read_text() == "#version: 0.2\n"


def test_hf_dir_trains_like_the_same_weights_in_one_file(setup, tmp_path):
    """A sharded BF16 directory (GPT-2: prefixed names) gives the losses of the same values in one plain file."""
    d, cfg, prog = setup
    w = {n: bf16_round(x) for n, x in random_weights(cfg, seed=8).items()}
    save_hf(tmp_path / "hf", cfg, w, dtype="bf16", max_shard_bytes=50000)
    st.save_file(w, tmp_path / "w.safetensors")
    losses = []
    for weights in (tmp_path / "hf", tmp_path / "w.safetensors"):
        log = tmp_path / (weights.name + ".jsonl")
        res = run([tool("llm-run"), str(prog), "--weights", str(weights), "--data", str(d / "t.npy"),
                   "--steps", "2", "--log-json", str(log), "--quiet"])
        assert res.returncode == 0, res.stderr
        losses.append([json.loads(line)["loss"] for line in log.read_text().splitlines()])
    assert losses[0] == losses[1] and len(losses[0]) == 2


def test_bare_names_without_prefix_load(setup, tmp_path):
    """GPT2Model's save_pretrained (no prefix) and a plain config.json + model.safetensors."""
    d, cfg, prog = setup
    (tmp_path / "bare").mkdir()
    st.save_file(random_weights(cfg, seed=9), tmp_path / "bare" / "model.safetensors")
    (tmp_path / "bare" / "config.json").write_text(json.dumps(cfg.to_hf_dict()))
    res = export(setup, tmp_path / "bare", tmp_path / "out", "--export-dtype", "bf16")
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "out" / "config.json").read_text())["torch_dtype"] == "bfloat16"
    assert all(dt == "BF16" for dt, _ in stored_names(tmp_path / "out").values())


def test_hf_errors(setup, tmp_path):
    d, cfg, prog = setup
    w = random_weights(cfg, seed=1)
    save_hf(tmp_path / "src", cfg, w)
    cases = []
    # Never over the input directory.
    res = export(setup, tmp_path / "src", tmp_path / "src")
    cases.append((res, "is the --weights directory; refusing to overwrite it"))
    # A plain weights file needs --hf-config.
    st.save_file(w, tmp_path / "w.safetensors")
    res = export(setup, tmp_path / "w.safetensors", tmp_path / "o1")
    cases.append((res, "--export-hf needs the model's config.json"))
    # A config of another model.
    other = dict(cfg.to_hf_dict(), vocab_size=cfg.vocab_size + 1)
    (tmp_path / "other.json").write_text(json.dumps(other))
    res = export(setup, tmp_path / "w.safetensors", tmp_path / "o2", "--hf-config", str(tmp_path / "other.json"))
    cases.append((res, f"vocab_size is not {cfg.vocab_size}, the program's"))
    # A directory without weights, an index pointing outside, a name given twice.
    (tmp_path / "empty").mkdir()
    res = export(setup, tmp_path / "empty", tmp_path / "o3", "--hf-config", model_path(cfg.model_type + "-tiny"))
    cases.append((res, "--weights: '" + str(tmp_path / "empty") + "' is a directory without Hugging Face weights"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model.safetensors.index.json").write_text('{"weight_map": {"a": "../w.safetensors"}}')
    res = export(setup, tmp_path / "bad", tmp_path / "o4", "--hf-config", model_path(cfg.model_type + "-tiny"))
    cases.append((res, "must name a file in the directory"))
    if cfg.is_gpt2:
        (tmp_path / "twice").mkdir()
        st.save_file({"wte.weight": w["wte.weight"], "transformer.wte.weight": w["wte.weight"]},
                     tmp_path / "twice" / "model.safetensors")
        res = export(setup, tmp_path / "twice", tmp_path / "o5", "--hf-config", model_path("gpt2-tiny"))
        cases.append((res, "tensor 'wte.weight' is stored twice"))
    res = run([tool("llm-run"), str(prog), "--weights", str(tmp_path / "w.safetensors"), "--data",
               str(d / "t.npy"), "--hf-config", str(tmp_path / "other.json")])
    cases.append((res, "--hf-config needs --export-hf DIR"))
    for res, message in cases:
        assert res.returncode != 0 and message in res.stderr, (message, res.stderr)
    assert not (tmp_path / "o2" / "model.safetensors").exists()
    with pytest.raises(ValueError, match="missing 1: ln_f.bias|missing 1: model.norm.weight"):
        save_hf(tmp_path / "x", cfg, {n: t for n, t in w.items() if n not in ("ln_f.bias", "model.norm.weight")})


def test_load_hf_errors(tmp_path, gpt2_tiny):
    save_hf(tmp_path / "ok", gpt2_tiny, random_weights(gpt2_tiny))
    with pytest.raises(ValueError, match="no config.json"):
        load_hf(tmp_path)
    (tmp_path / "ok" / "model.safetensors.index.json").write_text('{"weight_map": {"wte.weight": 3}}')
    with pytest.raises(ValueError, match="tensor 'wte.weight' must name a file in the directory"):
        load_hf(tmp_path / "ok")
    (tmp_path / "ok" / "model.safetensors.index.json").write_text(
        '{"weight_map": {"transformer.wte.weight": "model.safetensors", "lm_head.x": "model.safetensors"}}')
    with pytest.raises(ValueError, match="places tensor 'lm_head.x' in model.safetensors"):
        load_hf(tmp_path / "ok")
    (tmp_path / "ok" / "model.safetensors.index.json").unlink()
    (tmp_path / "ok" / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="neither model.safetensors nor"):
        load_hf(tmp_path / "ok")


def test_untied_gpt2_head_is_stored_outside_transformer(tmp_path):
    """GPT2LMHeadModel keeps an untied lm_head outside its `transformer` module: save_pretrained names it
    `lm_head.weight` (found by loading save_hf's directory with transformers 4.36, crosscheck_transformers.py).
    The compiler itself only takes tied GPT-2 heads; the Python reference and save_hf/load_hf take both."""
    src = json.loads(open(model_path("gpt2-tiny")).read())
    src["tie_word_embeddings"] = False
    (tmp_path / "config.json").write_text(json.dumps(src))
    cfg = load_config(str(tmp_path / "config.json"))
    w = random_weights(cfg, seed=9)
    save_hf(tmp_path / "py", cfg, w)
    names = stored_names(tmp_path / "py")
    assert "lm_head.weight" in names and "transformer.lm_head.weight" not in names
    assert "transformer.wte.weight" in names
    _, back = load_hf(tmp_path / "py")
    assert np.array_equal(back["lm_head.weight"], w["lm_head.weight"])
