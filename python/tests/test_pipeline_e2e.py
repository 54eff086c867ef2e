"""Pipeline parallelism end to end on CPU ranks: every schedule (GPipe, 1F1B,
interleaved 1F1B, ZB-H1), alone and combined with data and tensor
parallelism, trains to the single-device PyTorch loss curve (same weights,
data, AdamW) step by step.

The models are the tiny GPT-2 (tied embeddings: the token embedding lives on
the first and the last stage) and the tiny LLaMA (GQA, RoPE, SwiGLU) with
8 layers, so pp=4 with 2 virtual stages per rank has a layer per stage.
"""

import json
import shutil

import numpy as np
import pytest

from conftest import model_path

torch = pytest.importorskip("torch")

from test_e2e_cpu import LR, RTOL, SEQ, WD, run, tool, train_run  # noqa: E402
from llmir import config, reference, safetensors  # noqa: E402
from llmir.weights import random_tokens, random_weights, save_tokens  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("mpirun") is None,
                                reason="mpirun not installed")

BATCH, STEPS, LAYERS = 8, 4, 8


@pytest.fixture(scope="module", params=["gpt2-tiny", "llama-tiny"])
def deep_model(request, tmp_path_factory):
    """An 8-layer variant of a tiny model, its weights, tokens and the
    PyTorch reference losses of STEPS AdamW steps."""
    name = request.param
    d = tmp_path_factory.mktemp(name)
    raw = json.load(open(model_path(name)))
    raw["n_layer" if "n_layer" in raw else "num_hidden_layers"] = LAYERS
    cfg_path = d / "config.json"
    cfg_path.write_text(json.dumps(raw))
    cfg = config.load_config(str(cfg_path))
    weights, tokens = d / "w.safetensors", d / "t.npy"
    safetensors.save_file(random_weights(cfg, seed=5), str(weights))
    save_tokens(random_tokens(cfg.vocab_size, 2000, seed=6), str(tokens))
    params = reference.load_params(cfg, str(weights))
    ref, _ = reference.train(cfg, params, np.load(tokens), STEPS, BATCH, SEQ,
                             lr=LR, weight_decay=WD)
    return cfg_path, weights, tokens, ref


def compile_pipeline(cfg_path, out, plan, split_options="", train=True, logits=False):
    imp = run([tool("llm-translate"), "--import-hf-config", str(cfg_path),
               "--batch", str(BATCH), "--seq", str(SEQ)] + (["--logits"] if logits else []))
    assert imp.returncode == 0, imp.stderr
    low = run([tool("llm-opt"), f"--llm-partition={plan}"] +
              (["--tfm-build-train-step"] if train else []) +
              [f"--llm-pipeline-split{split_options}", "--llm-lower-to-exec"],
              input=imp.stdout)
    assert low.returncode == 0, low.stderr
    exp = run([tool("llm-translate"), "--export-program", "-o", str(out)],
              input=low.stdout)
    assert exp.returncode == 0, exp.stderr
    return out, low.stdout


def train(prog, ranks, weights, tokens, log):
    return train_run(prog, ranks, weights, tokens, STEPS, log)


def check(ours, ref, what):
    assert len(ours) == STEPS, what
    for step, (a, b) in enumerate(zip(ours, ref)):
        assert abs(a - b) <= RTOL * abs(b), (what, step, a, b)
    assert ours[-1] != ours[0]


@pytest.mark.parametrize("plan,ranks", [
    ("pp=2 microbatches=4 schedule=gpipe", 2),
    ("pp=2 microbatches=4 schedule=1f1b", 2),
    ("pp=2 vpp=2 microbatches=4 schedule=interleaved", 2),
    ("pp=2 microbatches=4 schedule=zb-h1", 2),
    ("pp=4 microbatches=8 schedule=1f1b", 4),
    ("pp=4 microbatches=4 schedule=gpipe", 4),
    ("pp=4 vpp=2 microbatches=4 schedule=interleaved", 4),
    ("pp=4 microbatches=4 schedule=zb-h1", 4),
    ("pp=2 dp=2 microbatches=2 schedule=1f1b", 4),
    ("pp=2 tp=2 microbatches=4 schedule=1f1b", 4),
    ("pp=2 dp=2 tp=2 microbatches=2 schedule=1f1b", 8),
    ("pp=2 dp=2 zero=1 microbatches=2 schedule=zb-h1", 4),
    # ZeRO-3 per stage: gathered per micro-batch (forward and backward), or
    # once per micro-batch (reshard-after-forward=false); zero3-gather=step:
    # test_zero3_pipeline.py.
    ("pp=2 dp=2 zero=3 microbatches=2 schedule=1f1b", 4),
    ("pp=2 dp=2 zero=3 reshard-after-forward=false microbatches=2 schedule=1f1b", 4),
    ("dp=2 zero=3 microbatches=2", 2),
    ("pp=2 tp=2 sp=true microbatches=2 schedule=interleaved vpp=2", 4),
    ("pp=2 microbatches=4 schedule=1f1b recompute=full", 2),
    ("pp=2 microbatches=1", 2),
    ("microbatches=4", 1),  # gradient accumulation on one rank
    ("pp=2 microbatches=4 schedule=zb-v", 2),  # V placement: E and L on rank 0
    ("pp=4 microbatches=4 schedule=zb-v", 4),
    ("pp=2 dp=2 microbatches=2 schedule=zb-v", 4),
    ("pp=2 microbatches=4 schedule=zb-h2", 2),  # extra warm-up forwards, Ws at the tail
    ("pp=4 microbatches=8 schedule=zb-h2", 4),
    ("pp=2 dp=2 microbatches=4 schedule=zb-h2", 4),
    ("pp=2 microbatches=4 schedule=v-half", 2),  # V placement under an activation limit
    ("pp=4 microbatches=8 schedule=v-half", 4),
    ("pp=2 tp=2 microbatches=4 schedule=v-half", 4),
    ("pp=2 microbatches=4 schedule=v-min", 2),
    ("pp=4 microbatches=8 schedule=v-min", 4),
    ("pp=2 dp=2 microbatches=4 schedule=v-min", 4),
    ("pp=2 microbatches=4 schedule=dualpipev", 2),  # (F, B) pairs of both chunks, split backwards at the edges
    ("pp=4 microbatches=8 schedule=dualpipev", 4),
    ("pp=2 tp=2 microbatches=4 schedule=dualpipev", 4),
    # Each new kind with the parallelism not covered above (dp or tp).
    ("pp=2 tp=2 microbatches=4 schedule=zb-h2", 4),
    ("pp=2 dp=2 microbatches=2 schedule=v-half", 4),
    ("pp=2 tp=2 microbatches=4 schedule=v-min", 4),
    ("pp=2 dp=2 microbatches=4 schedule=dualpipev", 4),
    ("pp=2 microbatches=2 layout=E|t*8,L", 2),  # an embedding-only stage
    ("pp=3 microbatches=4 layout=E,t*2|t*3|t*3,L", 3),  # uneven, odd pp
])
def test_pipeline_training_matches_reference(deep_model, tmp_path, plan, ranks):
    cfg_path, weights, tokens, ref = deep_model
    prog, _ = compile_pipeline(cfg_path, tmp_path / "p.llmir", plan)
    check(train(prog, ranks, weights, tokens, tmp_path / "log.jsonl"), ref, plan)


def test_user_schedule_file(deep_model, tmp_path):
    """A hand-written schedule (here: 1F1B with the steady state reordered
    but still valid) is used as given; a broken one is rejected with the
    offending step."""
    cfg_path, weights, tokens, ref = deep_model
    good = tmp_path / "good.txt"
    good.write_text("rank 0: F0s0 F1s0 B0s0 F2s0 B1s0 F3s0 B2s0 B3s0\n"
                    "rank 1: F0s1 B0s1 F1s1 B1s1 F2s1 B2s1 F3s1 B3s1\n")
    prog, _ = compile_pipeline(cfg_path, tmp_path / "p.llmir",
                               "pp=2 microbatches=4", f"=schedule-file={good}")
    check(train(prog, 2, weights, tokens, tmp_path / "log.jsonl"), ref, "file")

    bad = tmp_path / "bad.txt"
    bad.write_text("rank 0: F0s0 B0s0 F1s0 B1s0\n"
                   "rank 1: B0s1 F0s1 F1s1 B1s1\n")
    imp = run([tool("llm-translate"), "--import-hf-config", str(cfg_path),
               "--batch", str(BATCH), "--seq", str(SEQ)])
    res = run([tool("llm-opt"), "--llm-partition=pp=2 microbatches=2",
               "--tfm-build-train-step", f"--llm-pipeline-split=schedule-file={bad}",
               "-o", "/dev/null"], input=imp.stdout)
    assert res.returncode != 0
    assert "rank 1" in res.stderr and "B0s1" in res.stderr, res.stderr
    assert "Stack dump" not in res.stderr


def test_memory_plan_follows_the_schedule(deep_model, tmp_path):
    """GPipe keeps every micro-batch's activations until its backward; 1F1B
    at most pp on the first stage: the static memory plan shows it (GPipe's
    temporaries grow with the micro-batch count, 1F1B's do not)."""
    cfg_path = deep_model[0]

    def temp_peak(schedule, m):
        _, ir = compile_pipeline(cfg_path, tmp_path / f"{schedule}{m}.llmir",
                                 f"pp=2 microbatches={m} schedule={schedule}")
        head = ir[ir.index("exec.program @stage0"):].split("\n", 1)[0]
        return int(head.split("temp_peak_bytes = ")[1].split(" ")[0])

    g4, g8 = temp_peak("gpipe", 4), temp_peak("gpipe", 8)
    f4, f8 = temp_peak("1f1b", 4), temp_peak("1f1b", 8)
    # Same batch: 1F1B holds pp micro-batches, so smaller ones need less;
    # GPipe holds all m (the whole batch) and never less than 1F1B; the gap
    # grows with m (m - pp micro-batches more in flight).
    assert f8 < f4, (f4, f8)
    assert g4 >= f4 and g8 > f8, (g4, g8, f4, f8)
    assert g8 - f8 > 2 * (g4 - f4), (g4, g8, f4, f8)


@pytest.mark.parametrize("plan,ranks", [("pp=2 microbatches=2", 2),
                                        ("pp=4 vpp=2 microbatches=4 schedule=interleaved", 4),
                                        ("pp=2 tp=2 dp=2 microbatches=2", 8)])
def test_pipelined_evaluation_and_logits(deep_model, tmp_path, plan, ranks):
    """Forward-only programs split over stages: the evaluation loss and the
    logits (gathered on the last stage, forwarded to rank 0) equal PyTorch's."""
    cfg_path, weights, tokens, _ = deep_model
    cfg = config.load_config(str(cfg_path))
    params = reference.load_params(cfg, str(weights))
    x, y = reference.batch_for_step(np.load(tokens), 0, BATCH, SEQ)
    with torch.no_grad():
        ref_loss = float(reference.loss(cfg, params, x, y))
        ref_logits = reference.forward(cfg, params, x).numpy()

    prog, _ = compile_pipeline(cfg_path, tmp_path / "e.llmir", plan, train=False)
    log = tmp_path / "log.jsonl"
    res = run(["mpirun", "--oversubscribe", "--allow-run-as-root", "-np", str(ranks),
               tool("llm-run"), str(prog), "--weights", str(weights), "--data", str(tokens),
               "--steps", "1", "--eval", "--quiet", "--log-json", str(log), "--timeout", "60"],
              timeout=300)
    assert res.returncode == 0, res.stderr
    loss = json.loads(log.read_text().splitlines()[0])["loss"]
    assert abs(loss - ref_loss) <= RTOL * abs(ref_loss), (loss, ref_loss)

    if "tp=" in plan:
        return  # logits outputs are not tensor-parallel (see test_e2e_cpu)
    prog, _ = compile_pipeline(cfg_path, tmp_path / "l.llmir", plan, train=False, logits=True)
    out = tmp_path / "logits.npy"
    res = run(["mpirun", "--oversubscribe", "--allow-run-as-root", "-np", str(ranks),
               tool("llm-run"), str(prog), "--weights", str(weights), "--data", str(tokens),
               "--eval", "--quiet", "--logits-out", str(out), "--timeout", "60"], timeout=300)
    assert res.returncode == 0, res.stderr
    ours = np.load(out)
    assert ours.shape == ref_logits.shape
    assert np.abs(ours - ref_logits).max() <= RTOL * np.abs(ref_logits).max()


def test_pipeline_checkpoint_resumes_in_any_layout(deep_model, tmp_path):
    """A checkpoint written by a pp=2 x dp=2 run (stage-split parameters, the
    tied embedding on two stages, ZeRO-1 chunks) resumes bit-identically in
    its own layout and within tolerance on one rank or at pp=4."""
    cfg_path, weights, tokens, _ = deep_model
    a, _ = compile_pipeline(cfg_path, tmp_path / "a.llmir", "pp=2 dp=2 zero=1 microbatches=2")
    b, _ = compile_pipeline(cfg_path, tmp_path / "b.llmir", "dp=1")
    c, _ = compile_pipeline(cfg_path, tmp_path / "c.llmir", "pp=4 microbatches=4 schedule=zb-h1")

    straight = train_run(a, 4, weights, tokens, STEPS, tmp_path / "s.jsonl")
    ck = tmp_path / "ck"
    train_run(a, 4, weights, tokens, 2, tmp_path / "f.jsonl", "--save-checkpoint", str(ck))
    meta = safetensors.read_metadata(str(ck / "checkpoint.safetensors"))
    assert meta["step"] == "2" and meta["plan"] == "pp=2 dp=2 tp=1"
    assert train_run(a, 4, weights, tokens, STEPS, tmp_path / "r1.jsonl", "--resume", str(ck)) == straight[2:]
    for prog, ranks in [(b, 1), (c, 4)]:
        other = train_run(prog, ranks, weights, tokens, STEPS, tmp_path / f"r{ranks}.jsonl", "--resume", str(ck))
        for x, y in zip(other, straight[2:]):
            assert abs(x - y) <= RTOL * abs(y), (ranks, x, y)
