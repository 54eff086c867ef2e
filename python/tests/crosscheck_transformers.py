"""Manual cross-check (not collected by pytest): llmir.reference vs transformers' GPT2LMHeadModel / LlamaForCausalLM,
and llmir.safetensors vs the `safetensors` package.  Needs `transformers` (e.g. 4.36.2 with torch 1.13):

    python/tests/crosscheck_transformers.py   # run with a python that has torch + transformers + safetensors

Prints the max abs differences of logits, loss and gradients for several variants of the tiny test models, then
checks Hugging Face directories both ways: ``llmir.hf.save_hf`` and ``llm-run --export-hf`` (when build/bin/llm-run
exists) write directories ``from_pretrained`` loads with the same logits, and ``save_pretrained``'s (sharded)
directories load in ``llmir.hf.load_hf`` and ``llm-run --weights DIR``.
"""

import copy
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
MODELS = os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples", "models")

import transformers  # noqa: E402
from llmir import reference as R  # noqa: E402
from llmir import safetensors as st  # noqa: E402
from llmir.config import config_from_dict  # noqa: E402
from llmir.hf import load_hf, save_hf  # noqa: E402
from llmir.weights import random_tokens, random_weights, save_tokens  # noqa: E402


def variants():
    g = json.load(open(os.path.join(MODELS, "gpt2-tiny.json")))
    l = json.load(open(os.path.join(MODELS, "llama-tiny.json")))
    yield "gpt2-tiny", g
    yield "gpt2-tiny gelu exact, untied, inv-layer scale", dict(
        g, activation_function="gelu", tie_word_embeddings=False, scale_attn_by_inverse_layer_idx=True)
    yield "llama-tiny (GQA 4/2)", l
    yield "llama-tiny MHA kv=4, tied, attention_bias, theta 5e5", dict(
        l, num_key_value_heads=4, tie_word_embeddings=True, attention_bias=True, rope_theta=500000.0)
    yield "llama-tiny MQA kv=1, rms eps 1e-5", dict(l, num_key_value_heads=1, rms_norm_eps=1e-5)
    yield "llama-tiny rope_scaling linear x2", dict(l, rope_scaling={"type": "linear", "factor": 2.0})


def hf_model(d):
    hf_cfg = transformers.AutoConfig.for_model(**{k: v for k, v in d.items() if not k.startswith("_")})
    for k in ("attn_pdrop", "embd_pdrop", "resid_pdrop", "attention_dropout"):
        if hasattr(hf_cfg, k):
            setattr(hf_cfg, k, 0.0)
    cls = transformers.GPT2LMHeadModel if d["model_type"] == "gpt2" else transformers.LlamaForCausalLM
    torch.manual_seed(0)
    return cls(hf_cfg).float().eval()


def llm_run_export(tmp, d, src, out):
    """llm-run --weights SRC --steps 0 --export-hf OUT through a program compiled from config `d`; False when the
    tools are not built."""
    from llmir.driver import tool_path

    try:
        tools = {t: tool_path(t) for t in ("llm-translate", "llm-opt", "llm-run")}
    except Exception:
        return False
    cfg_file, prog, toks = (os.path.join(tmp, f) for f in ("cfg.json", "p.llmir", "t.npy"))
    json.dump(d, open(cfg_file, "w"))
    save_tokens(random_tokens(d["vocab_size"], 200), toks)
    imp = subprocess.run([tools["llm-translate"], "--import-hf-config", cfg_file, "--batch", "1", "--seq", "16"],
                         capture_output=True, text=True)
    if imp.returncode != 0:  # a variant only the reference implements
        print(f"  (llm-run export skipped: {imp.stderr.splitlines()[0].split('error: ')[-1]})")
        return False
    low = subprocess.run([tools["llm-opt"], "--llm-lower-to-exec"], input=imp.stdout.encode(), capture_output=True,
                         check=True)
    subprocess.run([tools["llm-translate"], "--export-program", "-o", prog], input=low.stdout, check=True)
    res = subprocess.run([tools["llm-run"], prog, "--weights", src, "--data", toks, "--steps", "0",
                          "--export-hf", out, "--quiet"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return True


def check_hf_dirs():
    """Worst logits difference over the directory round trips."""
    worst = 0.0
    for name, d in variants():
        cfg = config_from_dict(d)
        w = random_weights(cfg, seed=4, std=0.08)
        ids = torch.from_numpy(np.random.default_rng(5).integers(0, cfg.vocab_size, size=(2, 17)))
        want = R.forward(cfg, w, ids)
        with tempfile.TemporaryDirectory() as tmp:
            # llmir -> HF: save_hf, then from_pretrained.
            ours = save_hf(os.path.join(tmp, "ours"), cfg, w)
            theirs = transformers.AutoModelForCausalLM.from_pretrained(ours).float().eval()
            d_save = (theirs(input_ids=ids).logits - want).abs().max().item()
            # HF -> llmir: save_pretrained in shards, load_hf / llm-run --weights DIR, then --export-hf.
            hf_dir = os.path.join(tmp, "hf")
            theirs.save_pretrained(hf_dir, safe_serialization=True, max_shard_size="100KB")
            _, back = load_hf(hf_dir)
            d_load = max(float(np.abs(back[k] - w[k]).max()) for k in w)
            line = f"{name:55s} save_hf->from_pretrained |d|={d_save:.2e}  save_pretrained->load_hf |d|={d_load:.2e}"
            worst = max(worst, d_save, d_load)
            exported = os.path.join(tmp, "exported")
            if llm_run_export(tmp, d, hf_dir, exported):
                again = transformers.AutoModelForCausalLM.from_pretrained(exported).float().eval()
                d_run = (again(input_ids=ids).logits - want).abs().max().item()
                line += f"  llm-run --export-hf->from_pretrained |d|={d_run:.2e}"
                worst = max(worst, d_run)
            print(line)
    return worst


def main():
    worst = 0.0
    for name, d in variants():
        cfg = config_from_dict(d)
        rng = np.random.default_rng(1)
        w = {k: (v + rng.normal(0, 0.1, v.shape).astype(np.float32)) if v.ndim == 1 else v
             for k, v in random_weights(cfg, seed=3, std=0.08).items()}
        model = hf_model(d)
        tw = {k: torch.from_numpy(v) for k, v in w.items()}
        if cfg.is_gpt2:
            missing, unexpected = model.transformer.load_state_dict(
                {k: v for k, v in tw.items() if k != "lm_head.weight"}, strict=False)
            if not cfg.tie_word_embeddings:
                model.lm_head.weight.data.copy_(tw["lm_head.weight"])
        else:
            missing, unexpected = model.load_state_dict(tw, strict=False)
        missing = [m for m in missing if m != "lm_head.weight"]
        assert not missing and not unexpected, (missing, unexpected)
        if cfg.tie_word_embeddings:
            assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()

        ids = torch.from_numpy(np.random.default_rng(2).integers(0, cfg.vocab_size, size=(3, 33)))
        out = model(input_ids=ids, labels=ids)
        ref_logits = R.forward(cfg, w, ids)
        d_logits = (out.logits - ref_logits).abs().max().item()

        # HF shifts labels internally: loss(ids) == our loss on (ids[:, :-1], ids[:, 1:]).
        out.loss.backward()
        l, grads = R.loss_and_grads(cfg, w, ids[:, :-1], ids[:, 1:])
        d_loss = abs(out.loss.item() - l)
        hf_params = dict(model.transformer.named_parameters()) if cfg.is_gpt2 else dict(model.named_parameters())
        if cfg.is_gpt2 and not cfg.tie_word_embeddings:
            hf_params["lm_head.weight"] = model.lm_head.weight
        d_grad, rel_grad = 0.0, 0.0
        for k, g in grads.items():
            hg = hf_params[k].grad
            d_grad = max(d_grad, (hg - g).abs().max().item())
            rel_grad = max(rel_grad, ((hg - g).norm() / g.norm().clamp_min(1e-30)).item())
        worst = max(worst, d_logits)
        print(f"{name:55s} logits max|d|={d_logits:.2e} (|logits|max {ref_logits.abs().max():.2f})  "
              f"loss |d|={d_loss:.2e}  grads max|d|={d_grad:.2e} rel-norm={rel_grad:.2e}")

    # safetensors interoperability
    import safetensors.numpy as sn
    import safetensors.torch as stt

    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        t = {"b": rng.standard_normal((3, 5)).astype(np.float32), "a": np.arange(7, dtype=np.int64),
             "c": rng.standard_normal(4).astype(np.float16), "d": np.arange(6, dtype=np.int32).reshape(2, 3)}
        p1, p2 = os.path.join(tmp, "mine.st"), os.path.join(tmp, "theirs.st")
        st.save_file(t, p1, metadata={"format": "pt"})
        sn.save_file(t, p2, metadata={"format": "pt"})
        theirs_reads_mine = sn.load_file(p1)
        mine_reads_theirs = st.load_file(p2)
        ok = all(np.array_equal(theirs_reads_mine[k], t[k]) and np.array_equal(mine_reads_theirs[k], t[k]) for k in t)
        same_f32 = {"x": t["b"], "w": t["b"] * 2}
        st.save_file(same_f32, p1)
        sn.save_file(same_f32, p2)
        bt = {"x": torch.randn(3, 4).to(torch.bfloat16)}
        stt.save_file(bt, p2)
        bf_ok = np.array_equal(st.load_file(p2, bf16_as="uint16")["x"], bt["x"].view(torch.int16).numpy().view(np.uint16))
        st.save_file(bt, p1)
        bf_ok &= torch.equal(stt.load_file(p1)["x"], bt["x"])
        print(f"safetensors: cross-read ok={ok}, bf16 ok={bool(bf_ok)}")
        st.save_file(same_f32, p1)
        sn.save_file(same_f32, p2)
        print("safetensors: byte-identical F32 file:", open(p1, "rb").read() == open(p2, "rb").read())
    worst = max(worst, check_hf_dirs())
    print(f"worst logits max abs diff: {worst:.3e}")
    return 0 if worst <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
