"""llm-run's token data: llm.c shards (and globs of them) read like .npy,
the shuffled window order (checked against a NumPy mirror of the documented
permutation), exact resume of the data position, eval during training, the
streamed --log-json, and python -m llmir.prepare_data.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import model_path

torch = pytest.importorskip("torch")

from test_e2e_cpu import RTOL, SEQ, assert_clean_error, compile_model, run, tool  # noqa: E402
from test_schedule_clip import compile_pipelined  # noqa: E402
from llmir import config, reference, safetensors  # noqa: E402
from llmir.prepare_data import read_shard, write_shard  # noqa: E402
from llmir.weights import random_tokens, random_weights, save_tokens  # noqa: E402

BATCH = 4
MPI = shutil.which("mpirun") is not None
M64 = 2**64 - 1


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    cfg = config.load_config(model_path("gpt2-tiny"))
    weights = d / "w.safetensors"
    safetensors.save_file(random_weights(cfg, seed=21), str(weights))
    progs = {
        "eval": compile_model(model_path("gpt2-tiny"), d / "eval.llmir", batch=BATCH),
        "train": compile_model(model_path("gpt2-tiny"), d / "train.llmir", batch=BATCH, train=True),
        "dp2": compile_model(model_path("gpt2-tiny"), d / "dp2.llmir", batch=BATCH, train=True,
                             plan="dp=2"),
        "tp2": compile_model(model_path("gpt2-tiny"), d / "tp2.llmir", batch=BATCH, train=True,
                             plan="tp=2"),
        "zero": compile_model(model_path("gpt2-tiny"), d / "zero.llmir", batch=BATCH, train=True,
                              plan="dp=2 zero=1"),
        "pp2": compile_pipelined(model_path("gpt2-tiny"), d / "pp2.llmir", "pp=2"),
    }
    return cfg, weights, progs


def llm_run(prog, weights, data, *extra, ranks=1, timeout=300):
    cmd = [tool("llm-run"), str(prog), "--weights", str(weights), "--data", str(data),
           "--timeout", "60", *[str(e) for e in extra]]
    if ranks > 1:
        cmd = ["mpirun", "--oversubscribe", "--allow-run-as-root", "-np", str(ranks), *cmd]
    return run(cmd, timeout=timeout)


def logged(res, log):
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in log.read_text().splitlines()]


def split_shards(tokens, d, sizes, vocab=256):
    """Writes tokens as consecutive shards of the given sizes; returns their paths."""
    d.mkdir(exist_ok=True)
    paths, start = [], 0
    for i, n in enumerate(sizes):
        p = d / f"train_{i:06d}.bin"
        write_shard(str(p), tokens[start:start + n], vocab)
        paths.append(p)
        start += n
    assert start == len(tokens)
    return paths


def ref_losses(cfg, weights, batches):
    params = reference.load_params(cfg, str(weights))
    with torch.no_grad():
        return [float(reference.loss(cfg, params, torch.as_tensor(x), torch.as_tensor(y)))
                for x, y in batches]


# --- the documented shuffled order, mirrored in NumPy ----------------------

def shuffled_windows(n, seed, epoch):
    """TokenData.h: Fisher-Yates driven by splitmix64 from seed ^ (epoch * golden)."""
    state = seed ^ ((epoch * 0x9E3779B97F4A7C15) & M64)
    perm = list(range(n))
    for i in range(n - 1, 0, -1):
        state = (state + 0x9E3779B97F4A7C15) & M64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        z ^= z >> 31
        j = z % (i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def window_table(files):
    """(file index, start) of every window of SEQ+1 tokens, in file order."""
    out = []
    for f, toks in enumerate(files):
        out += [(f, w * SEQ) for w in range((len(toks) - 1) // SEQ if len(toks) > SEQ else 0)]
    return out


def shuffled_batches(files, seed, steps):
    table = window_table(files)
    per_epoch = len(table) // BATCH
    batches, seen = [], {}
    for step in range(steps):
        epoch, k = divmod(step, per_epoch)
        perm = shuffled_windows(len(table), seed, epoch)
        rows = [table[w] for w in perm[k * BATCH:(k + 1) * BATCH]]
        seen.setdefault(epoch, []).extend(perm[k * BATCH:(k + 1) * BATCH])
        win = np.stack([np.asarray(files[f][s:s + SEQ + 1], dtype=np.int64) for f, s in rows])
        batches.append((win[:, :-1], win[:, 1:]))
    for ids in seen.values():  # no window twice in an epoch
        assert len(ids) == len(set(ids))
    return batches


# --- 1. token shards -------------------------------------------------------

def test_shard_bytes_follow_llm_c(tmp_path):
    toks = np.array([0, 1, 255, 7], dtype=np.int32)
    write_shard(str(tmp_path / "a.bin"), toks, 256)
    raw = (tmp_path / "a.bin").read_bytes()
    header = np.frombuffer(raw[:1024], dtype="<i4")
    assert header[:3].tolist() == [20240520, 1, 4] and not header[3:].any()
    assert np.frombuffer(raw[1024:], dtype="<u2").tolist() == [0, 1, 255, 7]
    write_shard(str(tmp_path / "b.bin"), np.array([70000, 3]), 100000)
    raw = (tmp_path / "b.bin").read_bytes()
    assert np.frombuffer(raw[:12], dtype="<i4").tolist() == [20240801, 7, 2]
    assert np.frombuffer(raw[1024:], dtype="<u4").tolist() == [70000, 3]
    assert read_shard(str(tmp_path / "b.bin")).tolist() == [70000, 3]


def test_shards_read_like_the_npy(setup, tmp_path):
    """A glob of uint16 shards, one uint32 shard and the .npy: the same cyclic
    stream (windows crossing shard ends and wrapping), so bit-identical
    losses, equal to PyTorch's on numpy's windows."""
    cfg, weights, progs = setup
    tokens = random_tokens(cfg.vocab_size, 300, seed=5)
    save_tokens(tokens, str(tmp_path / "t.npy"))
    split_shards(tokens, tmp_path / "s", [100, 77, 123])
    write_shard(str(tmp_path / "big.bin"), tokens, 70000)  # uint32 format
    steps = 7  # 7 * 64 tokens: wraps around the 300 once
    runs = {}
    for name, data in (("npy", tmp_path / "t.npy"), ("glob", tmp_path / "s" / "train_*.bin"),
                       ("u32", tmp_path / "big.bin")):
        log = tmp_path / f"{name}.jsonl"
        runs[name] = [r["loss"] for r in logged(
            llm_run(progs["eval"], weights, data, "--eval", "--steps", steps, "--quiet",
                    "--log-json", log), log)]
    assert runs["glob"] == runs["npy"] and runs["u32"] == runs["npy"]
    want = ref_losses(cfg, weights, [reference.batch_for_step(tokens, s, BATCH, SEQ)
                                     for s in range(steps)])
    for ours, ref in zip(runs["npy"], want):
        assert abs(ours - ref) <= RTOL * abs(ref)


def test_bad_token_files(setup, tmp_path):
    cfg, weights, progs = setup
    good = random_tokens(cfg.vocab_size, 200, seed=1)

    def check(path, *needles):
        res = llm_run(progs["eval"], weights, path, "--eval")
        assert_clean_error(res, str(path) if "*" not in str(path) else "no file matches", *needles)

    p = tmp_path / "magic.bin"
    p.write_bytes(np.array([12345, 1, 0], "<i4").tobytes() + bytes(1012))
    check(p, "magic 12345")
    p = tmp_path / "version.bin"
    p.write_bytes(np.array([20240520, 7, 0], "<i4").tobytes() + bytes(1012))
    check(p, "version 7 (expected 1)")
    p = tmp_path / "short.bin"
    p.write_bytes(b"\x01\x02\x03")
    check(p, "shorter than the 1024-byte shard header")
    write_shard(str(tmp_path / "trunc.bin"), good, 256)
    raw = (tmp_path / "trunc.bin").read_bytes()
    (tmp_path / "trunc.bin").write_bytes(raw[:-10])
    check(tmp_path / "trunc.bin", "header says 200 tokens (400 bytes)", "390 bytes", "truncated")
    (tmp_path / "long.bin").write_bytes(raw + b"\0\0")
    check(tmp_path / "long.bin", "header says 200 tokens", "402 bytes")
    bad = good.copy()
    bad[37] = 300
    write_shard(str(tmp_path / "oov.bin"), bad, 1000)
    check(tmp_path / "oov.bin", "token id 300 at element offset 37", "[0, 256)")
    # int64 ids were once narrowed to int32 silently: 2^32 + 5 read as 5.
    wide = good.astype(np.int64)
    wide[17] = 2**32 + 5
    save_tokens(wide, str(tmp_path / "wide.npy"))
    check(tmp_path / "wide.npy", "token id 4294967301 at element offset 17")
    wide[17] = -3
    save_tokens(wide, str(tmp_path / "neg.npy"))
    check(tmp_path / "neg.npy", "token id -3 at element offset 17")
    np.save(tmp_path / "twod.npy", good.reshape(20, 10))
    check(tmp_path / "twod.npy", "must be 1-D")
    check(tmp_path / "none_*.bin")
    res = llm_run(progs["eval"], weights, tmp_path / "oov.bin", "--eval", "--data-order", "random")
    assert_clean_error(res, "--data-order", "sequential or shuffled")
    npy = tmp_path / "wide.npy"
    for extra, needle in ((["--eval-every", 2], "--eval-every needs --eval-data"),
                          (["--eval-data", npy], "--eval-data needs --eval-every"),
                          (["--eval-data", npy, "--eval-every", 0], "positive integer"),
                          (["--eval-data", npy, "--eval-every", 1, "--logits-out", tmp_path / "l"],
                           "--logits-out cannot be combined with --eval-data")):
        assert_clean_error(llm_run(progs["eval"], weights, npy, "--eval", *extra), needle)


# --- 2. shuffled order and exact resume -------------------------------------

def test_shuffled_windows_match_numpy(setup, tmp_path):
    """Each step's loss is PyTorch's on the windows the documented permutation
    picks from numpy slices of the shards, over three epochs."""
    cfg, weights, progs = setup
    tokens = random_tokens(cfg.vocab_size, 400, seed=8)
    sizes = [150, 10, 240]  # the 10-token shard holds no window
    split_shards(tokens, tmp_path / "s", sizes)
    files = [tokens[:150], tokens[150:160], tokens[160:]]
    assert len(window_table(files)) == 9 + 14  # 23 windows: 5 steps an epoch, 3 left over
    steps = 12
    log = tmp_path / "log.jsonl"
    got = [r["loss"] for r in logged(
        llm_run(progs["eval"], weights, tmp_path / "s" / "*.bin", "--eval", "--steps", steps,
                "--data-order", "shuffled", "--seed", 7, "--quiet", "--log-json", log), log)]
    want = ref_losses(cfg, weights, shuffled_batches(files, 7, steps))
    for step, (ours, ref) in enumerate(zip(got, want)):
        assert abs(ours - ref) <= RTOL * abs(ref), (step, ours, ref)
    other = tmp_path / "other.jsonl"
    seed8 = [r["loss"] for r in logged(
        llm_run(progs["eval"], weights, tmp_path / "s" / "*.bin", "--eval", "--steps", steps,
                "--data-order", "shuffled", "--seed", 8, "--quiet", "--log-json", other), other)]
    assert seed8 != got


def train(prog, weights, data, log, steps, *extra, ranks=1):
    return [r["loss"] for r in logged(
        llm_run(prog, weights, data, "--steps", steps, "--lr", "1e-3", "--quiet",
                "--log-json", log, *extra, ranks=ranks), log)]


@pytest.mark.parametrize("order", ["sequential", "shuffled"])
@pytest.mark.parametrize("prog,ranks", [("train", 1), ("dp2", 2)])
def test_resume_continues_the_data_exactly(setup, tmp_path, order, prog, ranks):
    if ranks > 1 and not MPI:
        pytest.skip("mpirun not installed")
    cfg, weights, progs = setup
    tokens = random_tokens(cfg.vocab_size, 250, seed=9)
    split_shards(tokens, tmp_path / "s", [120, 130])
    data = tmp_path / "s" / "*.bin"
    opts = ["--data-order", order, "--seed", "3"]
    # 250 tokens: 14 windows = 3 steps an epoch (shuffled), 64 tokens a step:
    # both orders cross epochs within the 8 steps.
    straight = train(progs[prog], weights, data, tmp_path / "s.jsonl", 8, *opts, ranks=ranks)
    ck = tmp_path / "ck"
    first = train(progs[prog], weights, data, tmp_path / "a.jsonl", 4, *opts,
                  "--save-checkpoint", ck, ranks=ranks)
    meta = safetensors.read_metadata(str(ck / "checkpoint.safetensors"))
    pos = (4 // 3, 4 % 3 * BATCH) if order == "shuffled" else divmod(4 * BATCH * SEQ, 250)
    assert (meta["data_order"], int(meta["data_epoch"]), int(meta["data_index"])) == (order, *pos)
    rest = train(progs[prog], weights, data, tmp_path / "b.jsonl", 8, *opts, "--resume", ck,
                 ranks=ranks)
    assert first + rest == straight  # bit-identical
    if order == "shuffled":
        res = llm_run(progs[prog], weights, data, "--steps", 8, "--data-order", order,
                      "--seed", 4, "--resume", ck, ranks=ranks)
        assert_clean_error(res, "--data-order shuffled --seed 3", "this run: --data-order "
                           "shuffled --seed 4")


# --- 3. eval during training, streamed log ---------------------------------

@pytest.mark.parametrize("prog,ranks", [("train", 1), ("dp2", 2), ("tp2", 2), ("zero", 2),
                                        ("pp2", 2)])
def test_eval_during_training(setup, tmp_path, prog, ranks):
    """--eval-every 2 --eval-steps 2: the held-out loss of the parameters
    after steps 2, 4, 6 (PyTorch's on the first two val batches); the
    training itself is bit-identical to a run without evaluation."""
    if ranks > 1 and not MPI:
        pytest.skip("mpirun not installed")
    cfg, weights, progs = setup
    tokens = random_tokens(cfg.vocab_size, 600, seed=10)
    val = random_tokens(cfg.vocab_size, 200, seed=11)
    save_tokens(tokens, str(tmp_path / "t.npy"))
    write_shard(str(tmp_path / "val.bin"), val, 256)
    plain = train(progs[prog], weights, tmp_path / "t.npy", tmp_path / "p.jsonl", 6, ranks=ranks)
    res = llm_run(progs[prog], weights, tmp_path / "t.npy", "--steps", 6, "--lr", "1e-3",
                  "--eval-data", tmp_path / "val.bin", "--eval-every", 2, "--eval-steps", 2,
                  "--log-json", tmp_path / "e.jsonl", ranks=ranks)
    log = logged(res, tmp_path / "e.jsonl")
    assert [r["loss"] for r in log] == plain
    assert [("eval_loss" in r) for r in log] == [False, True] * 3
    assert res.stderr.count("| eval loss ") == 3
    val_batches = [reference.batch_for_step(val, i, BATCH, SEQ) for i in range(2)]
    want = {}

    def callback(step, loss, params):
        if (step + 1) % 2 == 0:
            with torch.no_grad():
                want[step] = np.mean([float(reference.loss(cfg, params, x, y))
                                      for x, y in val_batches])

    reference.train(cfg, reference.load_params(cfg, str(weights)), tokens, 6, BATCH, SEQ,
                    lr=1e-3, callback=callback)
    for r in log:
        if "eval_loss" in r:
            assert abs(r["eval_loss"] - want[r["step"]]) <= 1e-4 * want[r["step"]], r


def test_log_json_lines_survive_a_kill(setup, tmp_path):
    cfg, weights, progs = setup
    save_tokens(random_tokens(cfg.vocab_size, 600, seed=12), str(tmp_path / "t.npy"))
    log = tmp_path / "log.jsonl"
    proc = subprocess.Popen([tool("llm-run"), str(progs["train"]), "--weights", str(weights),
                             "--data", str(tmp_path / "t.npy"), "--steps", "100000", "--quiet",
                             "--log-json", str(log)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and (not log.exists() or log.read_text().count("\n") < 3):
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    lines = log.read_text().splitlines()
    assert len(lines) >= 3
    assert [json.loads(line)["step"] for line in lines] == list(range(len(lines)))


# --- 4. prepare_data ---------------------------------------------------------

def prepare(*args, env=None):
    return run([sys.executable, "-m", "llmir.prepare_data", *[str(a) for a in args]], env=env)


def test_prepare_data_bytes(setup, tmp_path):
    cfg, weights, progs = setup
    texts = ["héllo wörld, " * 40, "the quick brown fox\n" * 30]
    for i, t in enumerate(texts):
        (tmp_path / f"{i}.txt").write_text(t, encoding="utf-8")
    out = tmp_path / "out"
    res = prepare("--input", tmp_path / "0.txt", tmp_path / "1.txt", "--bytes", "--output", out,
                  "--val-fraction", "0.1", "--shard-tokens", "500")
    assert res.returncode == 0, res.stderr
    stream = np.frombuffer("".join(texts).encode("utf-8"), dtype=np.uint8)
    n_val = round(len(stream) * 0.1)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["vocab_size"] == 256 and meta["dtype"] == "uint16"
    assert meta["train_tokens"] == len(stream) - n_val and meta["val_tokens"] == n_val
    train_ids = np.concatenate([read_shard(str(out / n)) for n in meta["train"]])
    assert meta["train"][0] == "train_000000.bin" and len(meta["train"]) == -(-len(train_ids) // 500)
    assert train_ids.tolist() == stream[:-n_val].tolist()
    assert read_shard(str(out / "val_000000.bin")).tolist() == stream[-n_val:].tolist()
    # llm-run trains on them and evaluates on the val shard.
    res = llm_run(progs["train"], weights, out / "train_*.bin", "--steps", 2, "--eval-data",
                  out / "val_000000.bin", "--eval-every", 1)
    assert res.returncode == 0 and res.stderr.count("| eval loss ") == 2, res.stderr


def test_prepare_data_errors(tmp_path):
    (tmp_path / "a.txt").write_text("abc" * 10)
    res = prepare("--input", tmp_path / "a.txt", "--bytes", "--output", tmp_path / "o",
                  "--val-fraction", "1.5")
    assert res.returncode == 1 and "--val-fraction 1.5" in res.stderr
    res = prepare("--input", tmp_path / "missing.txt", "--bytes", "--output", tmp_path / "o")
    assert res.returncode == 1 and "missing.txt" in res.stderr
    # Without the tokenizers package: a clear hint (simulated by blocking the import).
    env = dict(os.environ)
    block = tmp_path / "block"
    block.mkdir()
    (block / "tokenizers.py").write_text("raise ImportError('blocked for the test')\n")
    env["PYTHONPATH"] = f"{block}:{env.get('PYTHONPATH', '')}"
    res = prepare("--input", tmp_path / "a.txt", "--train-bpe", "300", "--output", tmp_path / "o",
                  env=env)
    assert res.returncode == 1 and "pip install tokenizers" in res.stderr


def test_prepare_data_bpe(setup, tmp_path):
    tk = pytest.importorskip("tokenizers")
    text = "the cat sat on the mat. " * 200 + "a dog ran far away. " * 200
    (tmp_path / "a.txt").write_text(text)
    out = tmp_path / "out"
    res = prepare("--input", tmp_path / "a.txt", "--train-bpe", "300", "--output", out)
    assert res.returncode == 0, res.stderr
    meta = json.loads((out / "meta.json").read_text())
    tok = tk.Tokenizer.from_file(str(out / "tokenizer.json"))
    assert meta["vocab_size"] == tok.get_vocab_size() <= 300
    ids = np.concatenate([read_shard(str(out / n)) for n in meta["train"] + meta["val"]])
    assert ids.tolist() == tok.encode(text).ids
    assert tok.decode(ids.tolist()) == text
    # --tokenizer with the saved file gives the same shards.
    again = tmp_path / "again"
    res = prepare("--input", tmp_path / "a.txt", "--tokenizer", out / "tokenizer.json",
                  "--output", again)
    assert res.returncode == 0, res.stderr
    assert (again / "train_000000.bin").read_bytes() == (out / "train_000000.bin").read_bytes()
