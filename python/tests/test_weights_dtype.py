"""Mixed-precision weights through llm-run: F32/BF16/F16 safetensors load into an f32 program (converted on
load), --export-weights writes the gathered parameters as f32/bf16/f16, and bad files or options get clear errors.
"""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import model_path

torch = pytest.importorskip("torch")

from test_e2e_cpu import compile_model, run, tool  # noqa: E402
from llmir import safetensors as st  # noqa: E402

MODEL = "gpt2-tiny"
BATCH = 2


def make_inputs(*args):
    res = subprocess.run([sys.executable, "-m", "llmir.make_inputs", "--config", model_path(MODEL), *args],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("weights_dtype")
    make_inputs("--weights", str(d / "f32.safetensors"), "--tokens", str(d / "t.npy"),
                "--num-tokens", "400", "--seed", "3")
    make_inputs("--weights", str(d / "bf16.safetensors"), "--dtype", "bf16", "--seed", "3")
    make_inputs("--weights", str(d / "f16.safetensors"), "--dtype", "f16", "--seed", "3")
    prog = compile_model(model_path(MODEL), d / "train.llmir", train=True, batch=BATCH)
    return d, prog


def train(prog, weights, tokens, log, *extra, steps=2):
    res = run([tool("llm-run"), str(prog), "--weights", str(weights), "--data", str(tokens),
               "--steps", str(steps), "--lr", "1e-3", "--log-json", str(log), "--quiet", *extra])
    assert res.returncode == 0, res.stderr
    return [json.loads(line)["loss"] for line in log.read_text().splitlines()]


def test_python_reads_and_writes_bf16_and_f16(tmp_path):
    x = np.array([1.0, 1.0 + 2.0**-8, -2.5, 70000.0, 2.0**-20, np.inf], dtype=np.float32)
    path = tmp_path / "x.safetensors"
    with np.errstate(over="ignore"):  # 70000 -> inf in f16, on purpose
        st.save_file({"b": st.BF16.from_float(x), "h": x.astype(np.float16)}, path)
    infos, _ = st.read_header(path)
    assert infos["b"].dtype == "BF16" and infos["h"].dtype == "F16"
    loaded = st.load_file(path)
    want_b = torch.from_numpy(x).to(torch.bfloat16).float().numpy()
    assert np.array_equal(loaded["b"], want_b)
    assert np.array_equal(loaded["h"], torch.from_numpy(x).to(torch.float16).numpy())
    assert np.array_equal(st.load_file(path, bf16_as="uint16")["b"], st.float32_to_bf16_bits(x))
    assert st.load_torch(path)["b"].dtype == torch.bfloat16


@pytest.mark.parametrize("dtype,rounded", [
    ("bf16", lambda v: st.bf16_bits_to_float32(st.float32_to_bf16_bits(v))),
    ("f16", lambda v: v.astype(np.float16).astype(np.float32)),
])
def test_16bit_file_trains_like_prerounded_f32(setup, tmp_path, dtype, rounded):
    d, prog = setup
    pre = tmp_path / "pre.safetensors"
    st.save_file({k: rounded(v) for k, v in st.load_file(d / "f32.safetensors").items()}, pre)
    ours = train(prog, d / f"{dtype}.safetensors", d / "t.npy", tmp_path / "a.jsonl")
    ref = train(prog, pre, d / "t.npy", tmp_path / "b.jsonl")
    assert ours == ref  # bit-identical: the same f32 values reach the program
    full = train(prog, d / "f32.safetensors", d / "t.npy", tmp_path / "c.jsonl")
    assert ours[0] != full[0] and abs(ours[0] - full[0]) < 1e-2 * abs(full[0])


def test_export_round_trips(setup, tmp_path):
    d, prog = setup
    f32 = st.load_file(d / "f32.safetensors")
    out = tmp_path / "out.safetensors"
    train(prog, d / "f32.safetensors", d / "t.npy", tmp_path / "l.jsonl", "--export-weights", str(out), steps=0)
    exported = st.load_file(out)
    assert sorted(exported) == sorted(f32)
    for name, v in f32.items():
        assert exported[name].dtype == np.float32 and np.array_equal(exported[name], v), name

    train(prog, d / "f32.safetensors", d / "t.npy", tmp_path / "l.jsonl", "--export-weights", str(out),
          "--export-dtype", "bf16", steps=0)
    infos, _ = st.read_header(out)
    as_torch = st.load_torch(out)
    for name, v in f32.items():
        assert infos[name].dtype == "BF16", name
        want = torch.from_numpy(v).to(torch.bfloat16)
        assert torch.equal(as_torch[name].view(torch.int16), want.view(torch.int16)), name

    train(prog, d / "f32.safetensors", d / "t.npy", tmp_path / "l.jsonl", "--export-weights", str(out),
          "--export-dtype", "f16", steps=0)
    exported = st.load_file(out)
    for name, v in f32.items():
        assert exported[name].dtype == np.float16 and np.array_equal(exported[name], v.astype(np.float16)), name
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []


def test_export_after_training_equals_checkpoint(setup, tmp_path):
    d, prog = setup
    out, ck = tmp_path / "out.safetensors", tmp_path / "ck"
    train(prog, d / "bf16.safetensors", d / "t.npy", tmp_path / "l.jsonl", "--export-weights", str(out),
          "--save-checkpoint", str(ck), steps=2)
    exported = st.load_file(out)
    saved = st.load_file(ck / "checkpoint.safetensors")
    assert sorted(exported) == sorted(k for k in saved if not k.endswith((".exp_avg", ".exp_avg_sq")))
    for name, v in exported.items():
        assert np.array_equal(v, saved[name]), name
    # Trained: some parameter moved away from its (bf16) start.
    start = st.load_file(d / "bf16.safetensors")
    assert any(not np.array_equal(v, start[k]) for k, v in exported.items())


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed")
def test_export_gathers_tensor_parallel_shards(setup, tmp_path):
    d, _ = setup
    prog = compile_model(model_path(MODEL), tmp_path / "tp.llmir", plan="dp=1 tp=2", train=True, batch=BATCH)
    out = tmp_path / "out.safetensors"
    res = run(["mpirun", "--oversubscribe", "--allow-run-as-root", "-np", "2", tool("llm-run"), str(prog),
               "--weights", str(d / "bf16.safetensors"), "--data", str(d / "t.npy"), "--steps", "0",
               "--export-weights", str(out), "--export-dtype", "bf16", "--quiet", "--timeout", "60"],
              timeout=300)
    assert res.returncode == 0, res.stderr
    exported = st.load_file(out, bf16_as="uint16")
    want = st.load_file(d / "bf16.safetensors", bf16_as="uint16")
    assert sorted(exported) == sorted(want)
    for name, v in want.items():
        assert np.array_equal(exported[name], v), name


# --- errors --------------------------------------------------------------

def assert_clean_error(res, *needles):
    assert res.returncode != 0
    assert "error:" in res.stderr, res.stderr
    for n in needles:
        assert n in res.stderr, res.stderr
    for crash in ("Segmentation", "Aborted", "core dumped", "terminate called"):
        assert crash not in res.stderr, res.stderr


def llm_run(prog, weights, tokens, *extra):
    return run([tool("llm-run"), str(prog), "--weights", str(weights), "--data", str(tokens), "--quiet", *extra])


@pytest.mark.parametrize("np_dtype,st_dtype", [(np.uint8, "U8"), (np.int64, "I64")])
def test_unsupported_tensor_dtype(setup, tmp_path, np_dtype, st_dtype):
    d, prog = setup
    w = st.load_file(d / "f32.safetensors")
    name = "h.0.mlp.c_fc.weight" if "h.0.mlp.c_fc.weight" in w else sorted(w)[0]
    w[name] = np.zeros(w[name].shape, dtype=np_dtype)
    bad = tmp_path / "bad.safetensors"
    st.save_file(w, bad)
    assert_clean_error(llm_run(prog, bad, d / "t.npy"), str(bad), f"'{name}'", st_dtype)


def test_missing_tensor_in_bf16_file(setup, tmp_path):
    d, prog = setup
    w = st.load_file(d / "bf16.safetensors", bf16_as="uint16")
    name = sorted(w)[-1]
    del w[name]
    bad = tmp_path / "missing.safetensors"
    st.save_file({k: st.BF16(v) for k, v in w.items()}, bad)
    assert_clean_error(llm_run(prog, bad, d / "t.npy"), f"'{name}'", str(bad))


def test_export_refuses_to_overwrite_inputs(setup, tmp_path):
    d, prog = setup
    weights = tmp_path / "w.safetensors"
    shutil.copy(d / "f32.safetensors", weights)
    before = weights.read_bytes()
    assert_clean_error(llm_run(prog, weights, d / "t.npy", "--export-weights", str(weights)),
                       "--export-weights", "--weights", "refusing to overwrite")
    # The same file under another spelling, and the token file.
    other = tmp_path / "." / "w.safetensors"
    assert_clean_error(llm_run(prog, weights, d / "t.npy", "--export-weights", str(other)), "--weights")
    assert_clean_error(llm_run(prog, weights, d / "t.npy", "--export-weights", str(d / "t.npy")), "--data")
    assert_clean_error(llm_run(prog, weights, d / "t.npy", "--export-weights", str(prog)), "program")
    assert weights.read_bytes() == before


def test_bad_export_dtype(setup, tmp_path):
    d, prog = setup
    out = tmp_path / "out.safetensors"
    assert_clean_error(llm_run(prog, d / "f32.safetensors", d / "t.npy", "--export-weights", str(out),
                               "--export-dtype", "int8"), "--export-dtype", "int8", "f32, bf16 or f16")
    assert_clean_error(llm_run(prog, d / "f32.safetensors", d / "t.npy", "--export-dtype", "bf16"),
                       "--export-dtype needs --export-weights")
    assert_clean_error(llm_run(prog, d / "f32.safetensors", d / "t.npy", "--steps", "0"), "--steps")
    assert not out.exists()
