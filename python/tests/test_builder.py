"""llmir.Builder: custom models written op by op, checked in Python, compiled
and trained like imported ones (and against the PyTorch oracle where the
block is a GPT-2 or LLaMA block)."""

import os
import shutil
import subprocess

import numpy as np
import pytest

import llmir
from llmir import safetensors
from llmir.weights import save_tokens

B, S = 4, 16


def have_tools():
    try:
        llmir.tool_path("llm-run")
        return True
    except FileNotFoundError:
        if os.environ.get("LLMIR_REQUIRE_TOOLS") == "1":
            raise
        return False


needs_tools = pytest.mark.skipif(not have_tools(), reason="LLMIR tools not built")
needs_mpi = pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed")


def gpt2_block_model(batch=B, seq=S, V=96, h=32, H=4, L=2, P=32, I=128):
    """GPT-2 written with the builder (HF names, Conv1D layouts, tied head)."""
    b = llmir.Builder(batch=batch, seq=seq, model_type="gpt2")
    wte = b.param("wte.weight", [V, h])
    x = b.embedding(b.input_ids, wte) + b.embedding(b.position_ids(), b.param("wpe.weight", [P, h]))
    for i in range(L):
        def p(name, shape):
            return b.param(f"h.{i}.{name}", shape)
        with b.layer(i):
            a = b.layer_norm(x, p("ln_1.weight", [h]), p("ln_1.bias", [h]))
            q, k, v = b.split(b.linear(a, p("attn.c_attn.weight", [h, 3 * h]), p("attn.c_attn.bias", [3 * h])), 3)
            o = b.attention(q, k, v, num_heads=H)
            x = x + b.linear(o, p("attn.c_proj.weight", [h, h]), p("attn.c_proj.bias", [h]))
            m = b.layer_norm(x, p("ln_2.weight", [h]), p("ln_2.bias", [h]))
            m = b.gelu(b.linear(m, p("mlp.c_fc.weight", [h, I]), p("mlp.c_fc.bias", [I])))
            x = x + b.linear(m, p("mlp.c_proj.weight", [I, h]), p("mlp.c_proj.bias", [h]))
    x = b.layer_norm(x, b.param("ln_f.weight", [h]), b.param("ln_f.bias", [h]))
    return b.build(b.cross_entropy(b.linear(x, wte, layout="out_in"), b.labels))


def gpt2_config():
    return llmir.GPT2(n_layer=2, n_embd=32, n_head=4, vocab_size=96, n_positions=32)


def llama_block_model(V=64, h=32, H=4, KV=2, L=2, I=64, theta=10000.0, eps=1e-6):
    """LLaMA written with the builder (RMSNorm, RoPE, GQA, SwiGLU, [out, in] weights)."""
    b = llmir.Builder(batch=B, seq=S, model_type="llama")
    D = h // H
    x = b.embedding(b.input_ids, b.param("model.embed_tokens.weight", [V, h]))
    for i in range(L):
        def p(name, shape):
            return b.param(f"model.layers.{i}.{name}", shape)
        with b.layer(i):
            a = b.rms_norm(x, p("input_layernorm.weight", [h]), eps=eps)
            q = b.rope(b.linear(a, p("self_attn.q_proj.weight", [H * D, h]), layout="out_in"), H, theta)
            k = b.rope(b.linear(a, p("self_attn.k_proj.weight", [KV * D, h]), layout="out_in"), KV, theta)
            v = b.linear(a, p("self_attn.v_proj.weight", [KV * D, h]), layout="out_in")
            o = b.attention(q, k, v, num_heads=H, num_kv_heads=KV)
            x = x + b.linear(o, p("self_attn.o_proj.weight", [h, H * D]), layout="out_in")
            m = b.rms_norm(x, p("post_attention_layernorm.weight", [h]), eps=eps)
            gate = b.silu(b.linear(m, p("mlp.gate_proj.weight", [I, h]), layout="out_in"))
            up = b.linear(m, p("mlp.up_proj.weight", [I, h]), layout="out_in")
            x = x + b.linear(gate * up, p("mlp.down_proj.weight", [h, I]), layout="out_in")
    x = b.rms_norm(x, b.param("model.norm.weight", [h]), eps=eps)
    logits = b.linear(x, b.param("lm_head.weight", [V, h]), layout="out_in")
    return b.build(b.cross_entropy(logits, b.labels))


def llama_config():
    return llmir.Llama(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, vocab_size=64, max_position_embeddings=32)


# --- Python-side checks (no tools) ---------------------------------------------------------------

def test_shape_error_names_layer_and_op():
    b = llmir.Builder(batch=2, seq=8)
    x = b.embedding(b.input_ids, b.param("wte.weight", [100, 64]))
    for i in range(3):
        with b.layer(i):
            pass
    with b.layer(3):
        with pytest.raises(llmir.ShapeError, match=r"^layer 3: linear: input features 64 do not match weight "
                                                   r"\[128, 256\] \(layout in_out\)$"):
            b.linear(x, b.param("h.3.w", [128, 256]))
        with pytest.raises(llmir.ShapeError, match=r"^layer 3: linear: bias \[8\] does not match the out features 64"):
            b.linear(x, b.param("h.3.v", [64, 64]), b.param("h.3.b", [8]))
        with pytest.raises(llmir.ShapeError, match="^layer 3: attention: num_heads 5 does not divide"):
            b.attention(x, x, x, num_heads=5)
        with pytest.raises(llmir.ShapeError, match=r"^layer 3: attention: key \[2, 8, 64\] does not match"):
            b.attention(x, x, x, num_heads=4, num_kv_heads=2)
        with pytest.raises(llmir.ShapeError, match="^layer 3: layer_norm: gamma"):
            b.layer_norm(x, b.param("g", [32]))
        with pytest.raises(llmir.ShapeError, match="^layer 3: rope: hidden size 64 must be num_heads 64 x an even"):
            b.rope(x, 64)
    with pytest.raises(llmir.ShapeError, match=r"^add: operands tensor<2x8x64xf32> and tensor<2x8xi32> differ"):
        b.add(x, b.input_ids)
    with pytest.raises(llmir.ShapeError, match="^cross_entropy: labels"):
        b.cross_entropy(x, b.reshape(b.input_ids, [16]))
    with pytest.raises(llmir.ShapeError, match="^split: sizes"):
        b.split(x, [30, 30])
    with pytest.raises(llmir.ShapeError, match="^reshape: cannot view"):
        b.reshape(x, [3, -1])
    with pytest.raises(llmir.ShapeError, match="^matmul: contraction"):
        b.matmul(x, x)
    with pytest.raises(llmir.ShapeError, match="declared"):
        b.param("wte.weight", [100, 32])
    assert issubclass(llmir.ShapeError, ValueError)


def test_builder_misuse_is_a_value_error():
    b = llmir.Builder(batch=2, seq=8)
    with pytest.raises(ValueError, match="nest"):
        with b.layer(0):
            with b.layer(1):
                pass
    with pytest.raises(ValueError, match="already built"):
        with b.layer(0):
            pass
    with pytest.raises(ValueError, match="'input_ids' and 'labels'"):
        b.input("tokens")
    with pytest.raises(ValueError, match="no cross_entropy"):
        b.build()
    w = b.param("wte.weight", [16, 8])
    b.param("unused.weight", [8, 8])
    loss = b.cross_entropy(b.embedding(b.input_ids, w), b.labels)
    with pytest.raises(ValueError, match="unused.weight are not used"):
        b.build(loss)
    with pytest.raises(ValueError, match="gelu: approximate"):
        b.gelu(b.embedding(b.input_ids, w), approximate="erf")


def test_layer_results_are_the_values_used_after_it():
    b = llmir.Builder(batch=1, seq=4)
    w = b.param("wte.weight", [16, 8])
    x = b.embedding(b.input_ids, w)
    with b.layer(0):
        y = b.silu(x)
        z = b.gelu(y)
        b.mul(y, z)  # dead: dropped
    with b.layer(1):
        u = b.add(y, z)  # two results of layer 0 used here
    model = b.build(b.cross_entropy(b.linear(u, w, layout="out_in"), b.labels))
    ir = model.to_mlir()
    assert "tfm.layer 0 : tensor<1x4x8xf32>, tensor<1x4x8xf32> {" in ir
    assert "tfm.mul" not in ir
    assert model.num_layers == 2 and model.vocab_size == 16
    assert list(model.param_shapes()) == ["wte.weight"]


def test_random_weights_follow_the_op_roles():
    model = gpt2_block_model()
    assert model.random_weights(seed=5).keys() == llmir.random_weights(gpt2_config(), seed=5).keys()
    for (n, a), b in zip(model.random_weights(seed=5).items(), llmir.random_weights(gpt2_config(), seed=5).values()):
        np.testing.assert_array_equal(a, b, err_msg=n)


# --- compiler round trips ------------------------------------------------------------------------

def body(ir):
    """The function and its ops, without the module attributes and blank lines."""
    return [line for line in ir.splitlines()[1:] if line.strip()]


@needs_tools
def test_gpt2_block_is_the_imported_model(tmp_path):
    """The builder's GPT-2 is op for op what --import-hf-config makes (after a parse/print)."""
    model = gpt2_block_model(batch=2, seq=8, V=256, h=64, H=4, L=2, P=64, I=256)
    path = tmp_path / "b.mlir"
    model.save(str(path))
    ours = subprocess.run([llmir.tool_path("llm-opt"), str(path)], capture_output=True, text=True)
    assert ours.returncode == 0, ours.stderr
    cfg = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "models", "gpt2-tiny.json")
    theirs = subprocess.run([llmir.tool_path("llm-translate"), "--import-hf-config", cfg, "--batch", "2",
                             "--seq", "8"], capture_output=True, text=True)
    assert theirs.returncode == 0, theirs.stderr
    assert body(ours.stdout) == body(theirs.stdout)


def write_inputs(tmp_path, weights, vocab, mult=7):
    tokens = (np.arange(4000) * mult % vocab).astype(np.int32)
    wpath, tpath = tmp_path / "w.safetensors", tmp_path / "t.npy"
    safetensors.save_file(weights, str(wpath))
    save_tokens(tokens, str(tpath))
    return str(wpath), str(tpath), tokens


@needs_tools
@pytest.mark.parametrize("plan", [llmir.Plan(), pytest.param(llmir.Plan(dp=2), marks=needs_mpi)],
                         ids=["1rank", "dp2"])
def test_gpt2_block_trains_like_the_reference(tmp_path, plan):
    pytest.importorskip("torch")
    from llmir import reference as R

    model, cfg = gpt2_block_model(), gpt2_config()
    weights = model.random_weights(seed=5)
    wpath, tpath, tokens = write_inputs(tmp_path, weights, cfg.vocab_size)
    prog = llmir.compile(model, plan, train=True, workdir=str(tmp_path / "p"))
    assert (prog.batch, prog.seq, prog.config["model_type"]) == (B, S, "gpt2")
    losses = [s["loss"] for s in prog.run(wpath, tpath, steps=2, lr=1e-3)]
    ref, _ = R.train(cfg, weights, tokens, 2, B, S, lr=1e-3)
    np.testing.assert_allclose(losses, ref, rtol=1e-5)


@needs_tools
def test_llama_block_trains_like_the_reference(tmp_path):
    pytest.importorskip("torch")
    from llmir import reference as R

    model, cfg = llama_block_model(), llama_config()
    weights = llmir.random_weights(cfg, seed=2)
    assert dict(model.param_shapes()) == dict(llmir.param_shapes(cfg))
    wpath, tpath, tokens = write_inputs(tmp_path, weights, cfg.vocab_size, mult=5)
    prog = llmir.compile(model, llmir.Plan(), train=True, workdir=str(tmp_path / "p"))
    losses = [s["loss"] for s in prog.run(wpath, tpath, steps=2, lr=1e-3)]
    ref, _ = R.train(cfg, weights, tokens, 2, B, S, lr=1e-3)
    np.testing.assert_allclose(losses, ref, rtol=1e-5)


def parallel_block_model(tie=True):
    """A block no importer makes: GPT-J-style parallel attention + MLP off one
    RMSNorm, exact GELU, un-tied head with a bias."""
    V, h, H = 64, 32, 4
    b = llmir.Builder(batch=B, seq=S)
    x = b.embedding(b.input_ids, b.param("embed.weight", [V, h]))
    for i in range(2):
        with b.layer(i):
            n = b.rms_norm(x, b.param(f"blocks.{i}.norm.weight", [h]))
            qkv = b.linear(n, b.param(f"blocks.{i}.qkv.weight", [3 * h, h]), layout="out_in")
            q, k, v = b.split(qkv, [h, h, h])
            att = b.attention(b.rope(q, H), b.rope(k, H), v, num_heads=H)
            mlp = b.linear(b.gelu(b.linear(n, b.param(f"blocks.{i}.fc.weight", [h, 2 * h])), approximate="none"),
                           b.param(f"blocks.{i}.proj.weight", [2 * h, h]))
            x = x + b.scale(att + mlp, 0.5)
    logits = b.linear(x, b.param("head.weight", [V, h]), b.param("head.bias", [V]), layout="out_in")
    return b.build(b.cross_entropy(logits, b.labels))


@needs_tools
@pytest.mark.parametrize("plan", [llmir.Plan(), pytest.param(llmir.Plan(dp=2), marks=needs_mpi)],
                         ids=["1rank", "dp2"])
def test_custom_block_compiles_and_trains(tmp_path, plan):
    model = parallel_block_model()
    wpath, tpath, _ = write_inputs(tmp_path, model.random_weights(seed=1), 64, mult=3)
    prog = llmir.compile(model, plan, train=True, workdir=str(tmp_path / "p"))
    losses = [s["loss"] for s in prog.run(wpath, tpath, steps=2, lr=1e-3)]
    assert len(losses) == 2 and all(np.isfinite(losses))
    assert abs(losses[0] - np.log(64)) < 0.5  # near-uniform predictions at init


@needs_tools
@needs_mpi
def test_custom_block_losses_agree_across_layouts(tmp_path):
    model = parallel_block_model()
    wpath, tpath, _ = write_inputs(tmp_path, model.random_weights(seed=1), 64, mult=3)
    runs = []
    for plan in (llmir.Plan(), llmir.Plan(dp=2)):
        prog = llmir.compile(model, plan, train=True, workdir=str(tmp_path / f"p{plan.dp}"))
        runs.append([s["loss"] for s in prog.run(wpath, tpath, steps=2, lr=1e-3)])
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-5)


@needs_tools
def test_forward_only_ops_lower_and_run(tmp_path):
    """Attention spelled with reshape / transpose / matmul / softmax gives the loss of tfm.attention."""
    V, h, H = 32, 16, 2
    D = h // H
    losses = []
    for manual in (False, True):
        b = llmir.Builder(batch=2, seq=8)
        wte = b.param("wte.weight", [V, h])
        x = b.embedding(b.input_ids, wte)
        with b.layer(0):
            q, k, v = b.split(b.linear(x, b.param("h.0.qkv.weight", [h, 3 * h])), 3)
            if manual:
                def heads(t):
                    return b.transpose(b.reshape(t, [2, 8, H, D]), [0, 2, 1, 3])
                p = b.softmax(b.scale(b.matmul(heads(q), heads(k), transpose_b=True), 1 / np.sqrt(D)))
                o = b.reshape(b.transpose(b.matmul(p, heads(v)), [0, 2, 1, 3]), [2, 8, h])
            else:
                o = b.attention(q, k, v, num_heads=H, causal=False)
            x = x + o
        model = b.build(b.cross_entropy(b.linear(x, wte, layout="out_in"), b.labels))
        if manual:
            assert "tfm.matmul" in model.to_mlir() and "tfm.softmax" in model.to_mlir()
        wpath, tpath, _ = write_inputs(tmp_path, model.random_weights(seed=4), V)
        prog = llmir.compile(model, workdir=str(tmp_path / f"m{manual}"))
        losses.append([s["loss"] for s in prog.run(wpath, tpath, steps=1)])
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)


@needs_tools
def test_builder_batch_is_fixed(tmp_path):
    with pytest.raises(ValueError, match="batch 4 and seq 16"):
        llmir.compile(gpt2_block_model(), batch=8, workdir=str(tmp_path))
