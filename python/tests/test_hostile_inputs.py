"""Hostile-input regression suite (issue 20): what a new user or a fuzzer did
to llm-run, each pinned down so it stays fixed. Every case expects a short,
clear error naming the option/file/tensor (or a clean run), never a crash, a
hang or lost data.

Needs the built tools (build/bin, or $LLMIR_BUILD_DIR/bin). The compiler's
share of the suite is in lit: test/Tools/input-nesting.test (deep nesting),
test/Dialect/Tfm/model-attr-invalid.mlir (tfm.model against the ops),
test/Target/Program/no-output.test (an entry point without outputs),
test/Partition/unknown-option.test and option-given-twice.test (pass options),
test/Analysis/size-overflow.test (sizes that overflow).
"""

import os
import shutil
import stat
import subprocess
import threading
import time

import numpy as np
import pytest

from conftest import REPO, model_path

from llmir import config, safetensors  # noqa: E402
from llmir.weights import random_tokens, random_weights, save_tokens  # noqa: E402

BIN = os.path.join(os.environ.get("LLMIR_BUILD_DIR", os.path.join(REPO, "build")), "bin")
TOOLS = ["llm-translate", "llm-opt", "llm-run"]
if not all(os.path.exists(os.path.join(BIN, t)) for t in TOOLS):
    if os.environ.get("LLMIR_REQUIRE_TOOLS") == "1":
        raise RuntimeError(f"LLMIR tools not built in {BIN}")
    pytest.skip(f"LLMIR tools not built in {BIN}", allow_module_level=True)

needs_mpi = pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed")
MPIRUN = ["mpirun", "--oversubscribe", "--allow-run-as-root"]


def tool(name):
    return os.path.join(BIN, name)


def run(cmd, timeout=120, **kw):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=timeout, **kw)


def compile_model(out, *passes, extra=()):
    imp = run([tool("llm-translate"), "--import-hf-config", model_path("gpt2-tiny"),
               "--batch", "2", "--seq", "16", *extra])
    assert imp.returncode == 0, imp.stderr
    low = run([tool("llm-opt"), *passes, "--llm-lower-to-exec"], input=imp.stdout)
    assert low.returncode == 0, low.stderr
    exp = subprocess.run([tool("llm-translate"), "--export-program", "-o", str(out)],
                         input=low.stdout.encode(), capture_output=True)
    assert exp.returncode == 0, exp.stderr.decode()
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    cfg = config.load_config(model_path("gpt2-tiny"))
    params = random_weights(cfg, seed=3)
    safetensors.save_file(params, str(d / "w.safetensors"))
    save_tokens(random_tokens(cfg.vocab_size, 1000, seed=4), str(d / "t.npy"))
    return {
        "dir": d,
        "params": params,
        "weights": d / "w.safetensors",
        "tokens": d / "t.npy",
        "train": compile_model(d / "train.llmir", "--tfm-build-train-step"),
        "logits": compile_model(d / "logits.llmir", extra=["--logits"]),
        "train_tp2": compile_model(d / "train_tp2.llmir", "--llm-partition=tp=2",
                                   "--tfm-build-train-step"),
    }


def llm_run(f, *extra, program=None, timeout=120):
    return run([tool("llm-run"), program or f["train"], "--weights", f["weights"],
                "--data", f["tokens"], "--quiet", *extra], timeout=timeout)


def assert_clean_error(res, *needles):
    assert res.returncode != 0, res.stderr
    assert "error:" in res.stderr, res.stderr
    for n in needles:
        assert n in res.stderr, res.stderr
    for crash in ("Segmentation", "Aborted", "core dumped", "terminate called"):
        assert crash not in res.stderr, res.stderr


def snapshot(*paths):
    return {str(p): (os.lstat(p).st_ino, open(p, "rb").read()) for p in paths}


# --- 1. outputs never clobber an input, never replace a non-regular file ------

OUTPUTS = ["--log-json", "--logits-out", "--export-weights"]


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("input_name,option", [("weights", "--weights"), ("tokens", "--data"),
                                               ("train", "program")])
def test_output_equal_to_an_input_is_refused(files, tmp_path, output, input_name, option):
    target = files[input_name]
    before = snapshot(files["weights"], files["tokens"], files["train"])
    # The same file under three spellings: as given, through "./", a hard link.
    link = tmp_path / "hard"
    os.link(target, link)
    for spelling in (str(target), os.path.join(os.path.dirname(target), ".",
                                               os.path.basename(target)), str(link)):
        res = llm_run(files, output, spelling)
        assert_clean_error(res, output, option, "refusing to overwrite")
    assert snapshot(files["weights"], files["tokens"], files["train"]) == before


def test_save_checkpoint_over_the_weights_is_refused(files, tmp_path):
    ck = tmp_path / "ck"
    ck.mkdir()
    shutil.copy(files["weights"], ck / "checkpoint.safetensors")
    before = snapshot(ck / "checkpoint.safetensors")
    res = run([tool("llm-run"), files["train"], "--weights", ck / "checkpoint.safetensors",
               "--data", files["tokens"], "--quiet", "--save-checkpoint", ck])
    assert_clean_error(res, "--save-checkpoint", "--weights", "refusing to overwrite")
    assert snapshot(ck / "checkpoint.safetensors") == before


def test_outputs_of_a_resumed_run(files, tmp_path):
    ck = tmp_path / "ck"
    assert llm_run(files, "--steps", "1", "--save-checkpoint", ck).returncode == 0
    before = snapshot(ck / "checkpoint.safetensors")
    # The log may not replace the checkpoint being resumed from...
    res = llm_run(files, "--steps", "2", "--resume", ck, "--log-json", ck / "checkpoint.safetensors")
    assert_clean_error(res, "--log-json", "--resume")
    assert snapshot(ck / "checkpoint.safetensors") == before
    # ...but saving the next checkpoint over it is what --resume DIR
    # --save-checkpoint DIR is for.
    res = llm_run(files, "--steps", "2", "--resume", ck, "--save-checkpoint", ck)
    assert res.returncode == 0, res.stderr


def test_generate_out_equal_to_prompt_is_refused(files, tmp_path):
    prompt = tmp_path / "p.npy"
    np.save(prompt, np.zeros((2, 4), dtype=np.int64))
    before = snapshot(prompt)
    res = llm_run(files, "--generate", "--prompt", prompt, "--out", tmp_path / "." / "p.npy")
    assert_clean_error(res, "--out", "--prompt", "refusing to overwrite")
    assert snapshot(prompt) == before


def test_two_outputs_naming_one_file_are_refused(files, tmp_path):
    os.mkdir(tmp_path / "sub")
    res = llm_run(files, "--log-json", tmp_path / "x", "--export-weights",
                  tmp_path / "sub" / ".." / "x")
    assert_clean_error(res, "--log-json", "--export-weights", "same file")
    assert not (tmp_path / "x").exists()


def test_logits_out_to_dev_full_keeps_the_device(files):
    res = llm_run(files, "--eval", "--logits-out", "/dev/full", program=files["logits"])
    assert_clean_error(res, "/dev/full", "No space left on device")
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_log_json_to_dev_null_keeps_the_device(files):
    res = llm_run(files, "--steps", "2", "--log-json", "/dev/null")
    assert res.returncode == 0, res.stderr
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_log_json_to_a_fifo(files, tmp_path):
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    # No reader: a clear error, not a hang.
    res = llm_run(files, "--steps", "1", "--log-json", fifo, timeout=60)
    assert_clean_error(res, "--log-json", "no reader")
    # With a reader: the lines arrive through the FIFO, which stays a FIFO.
    got = []

    def reader():
        with open(fifo) as f:
            got.append(f.read())

    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.2)  # let the reader open its end first
    res = llm_run(files, "--steps", "2", "--log-json", fifo, timeout=60)
    t.join(timeout=60)
    assert res.returncode == 0, res.stderr
    assert len(got[0].splitlines()) == 2, got
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_output_through_a_symlink_replaces_the_target(files, tmp_path):
    target = tmp_path / "real.jsonl"
    target.write_text("old\n")
    link = tmp_path / "link.jsonl"
    os.symlink(target, link)
    res = llm_run(files, "--steps", "2", "--log-json", link)
    assert res.returncode == 0, res.stderr
    assert os.path.islink(link)
    assert len(target.read_text().splitlines()) == 2
    assert not [p for p in os.listdir(tmp_path) if ".tmp." in p]


# --- 2. errors under mpirun: once, no MPI_ABORT banner when avoidable --------

@needs_mpi
def test_mpi_error_every_rank_finds_is_printed_once(files):
    res = run(MPIRUN + ["-np", "2", tool("llm-run"), files["train"], "--weights",
                        files["weights"], "--data", files["tokens"]], timeout=120)
    assert_clean_error(res, "the program is partitioned for 1 rank but 2 ranks were launched")
    assert res.stderr.count("error:") == 1, res.stderr
    assert "rank 0:" not in res.stderr and "MPI_ABORT" not in res.stderr, res.stderr
    res = run(MPIRUN + ["-np", "2", tool("llm-run"), files["train_tp2"], "--weights",
                        files["weights"], "--data", files["tokens"], "--steps", "x"], timeout=120)
    assert_clean_error(res, "option --steps")
    assert res.stderr.count("error:") == 1 and "MPI_ABORT" not in res.stderr, res.stderr


@needs_mpi
def test_mpi_error_one_rank_finds_names_that_rank(files, tmp_path):
    # A NaN in the column block of c_fc only rank 1 loads (tp=2 splits its 256 columns).
    bad = dict(files["params"])
    w = bad["h.1.mlp.c_fc.weight"].copy()
    w[3, 200] = np.nan
    bad["h.1.mlp.c_fc.weight"] = w
    path = tmp_path / "nan.safetensors"
    safetensors.save_file(bad, str(path))
    res = run(MPIRUN + ["-np", "2", tool("llm-run"), files["train_tp2"], "--weights", path,
                        "--data", files["tokens"], "--timeout", "60"], timeout=120)
    assert_clean_error(res, "rank 1: ", "tensor 'h.1.mlp.c_fc.weight'", "index [3, 200]")
    assert res.stderr.count("error:") == 1 and "MPI_ABORT" not in res.stderr, res.stderr


def test_rank_count_grammar(files, tmp_path):
    prog = compile_model(tmp_path / "dp2.llmir", "--llm-partition=dp=2")
    res = llm_run(files, "--eval", program=prog)
    assert_clean_error(res, "the program is partitioned for 2 ranks but 1 rank was launched")


# --- 3. --steps ----------------------------------------------------------------

@pytest.mark.parametrize("value", ["99999999999999999999", "-3", "abc", "1e3", "0x10", ""])
def test_bad_steps_value_names_the_option(files, value):
    assert_clean_error(llm_run(files, "--steps", value), "option --steps", f"'{value}'")


def test_steps_before_the_resumed_step_is_an_error(files, tmp_path):
    ck = tmp_path / "ck"
    assert llm_run(files, "--steps", "3", "--save-checkpoint", ck).returncode == 0
    for steps in ("2", "3"):
        assert_clean_error(llm_run(files, "--steps", steps, "--resume", ck),
                           "option --steps", "step 3", "resumed checkpoint")
    assert llm_run(files, "--steps", "4", "--resume", ck).returncode == 0
    # Nothing to run, but something to do: export the checkpoint's weights.
    out = tmp_path / "out.safetensors"
    assert llm_run(files, "--steps", "0", "--resume", ck, "--export-weights", out).returncode == 0
    assert out.exists()


# --- 4. non-finite weights -----------------------------------------------------

@pytest.mark.parametrize("name,index", [("h.0.attn.c_proj.weight", (7, 9)), ("ln_f.bias", (5,)),
                                        ("wpe.weight", (63, 0))])
def test_non_finite_weight_names_tensor_and_index(files, tmp_path, name, index):
    bad = dict(files["params"])
    w = bad[name].copy()
    w[index] = np.nan
    bad[name] = w
    path = tmp_path / "nan.safetensors"
    safetensors.save_file(bad, str(path))
    flat = int(np.ravel_multi_index(index, w.shape))
    res = run([tool("llm-run"), files["train"], "--weights", path, "--data", files["tokens"]])
    assert_clean_error(res, f"tensor '{name}'", "(nan)", f"element {flat}",
                       "index [" + ", ".join(map(str, index)) + "]")
    assert "wte.weight" not in res.stderr


# --- 5. stale checkpoint temp files -------------------------------------------

def test_stale_checkpoint_temp_files_are_removed(files, tmp_path):
    ck = tmp_path / "ck"
    ck.mkdir()
    # A real leftover: a run killed while writing its checkpoint.
    env = dict(os.environ, LLMIR_FAULT_INJECT="kill-during-atomic-write")
    res = run([tool("llm-run"), files["train"], "--weights", files["weights"], "--data",
               files["tokens"], "--quiet", "--save-checkpoint", ck], env=env)
    assert res.returncode != 0
    killed = [p for p in os.listdir(ck) if p.startswith("checkpoint.safetensors.tmp.")]
    assert len(killed) == 1, os.listdir(ck)
    # Another run's file still being written (newer than ours) and files of
    # other names are kept.
    busy = ck / "checkpoint.safetensors.tmp.Busy01"
    busy.write_bytes(b"x")
    future = time.time() + 3600
    os.utime(busy, (future, future))
    other = ck / "checkpoint.safetensors.tmp.notours"
    other.write_bytes(b"y")
    old = time.time() - 3600
    os.utime(other, (old, old))
    mine = ck / "notes.txt"
    mine.write_text("keep")
    res = llm_run(files, "--steps", "1", "--save-checkpoint", ck)
    assert res.returncode == 0, res.stderr
    left = sorted(os.listdir(ck))
    assert left == sorted(["checkpoint.safetensors", busy.name, other.name, mine.name]), left


# --- 6. non-regular input files -------------------------------------------------

@pytest.mark.parametrize("option", ["program", "--weights", "--data", "--resume"])
def test_fifo_input_is_an_error_not_a_hang(files, tmp_path, option):
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    args = {"program": files["train"], "--weights": files["weights"], "--data": files["tokens"]}
    extra = []
    if option == "--resume":
        (tmp_path / "ck").mkdir()
        os.mkfifo(tmp_path / "ck" / "checkpoint.safetensors")
        extra = ["--resume", tmp_path / "ck"]
    else:
        args[option] = fifo
    res = run([tool("llm-run"), args["program"], "--weights", args["--weights"],
               "--data", args["--data"], *extra], timeout=60)
    assert_clean_error(res, option, "a FIFO, not a regular file")


def test_directory_input_is_an_error(files, tmp_path):
    res = run([tool("llm-run"), files["train"], "--weights", tmp_path, "--data", files["tokens"]])
    assert_clean_error(res, "--weights", "a directory")


# --- 7. corrupted program files -------------------------------------------------

def test_every_corrupted_program_is_rejected(files, tmp_path):
    """A byte changed anywhere in a program file (the image or its checksum
    trailer) is refused at load with an error naming the file; before the
    checksum, some such files ran to the end with other losses."""
    data = files["train"].read_bytes()
    rng = np.random.default_rng(20)
    offsets = set(rng.integers(0, len(data), size=120).tolist())
    offsets |= set(range(8)) | set(range(len(data) - 16, len(data)))  # magic, trailer
    path = tmp_path / "bad.llmir"
    for pos in sorted(offsets):
        mutated = bytearray(data)
        mutated[pos] ^= int(rng.integers(1, 256))
        path.write_bytes(bytes(mutated))
        res = llm_run(files, "--steps", "1", program=path)
        assert_clean_error(res, str(path))
        assert ("corrupt program file" in res.stderr
                or "not an LLMIR program file" in res.stderr), (pos, res.stderr)
    # Damage in the image itself is named as such.
    mutated = bytearray(data)
    mutated[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(mutated))
    assert_clean_error(llm_run(files, program=path), "checksum mismatch")
    # Without its trailer: cut off at the end.
    path.write_bytes(data[:-16])
    assert_clean_error(llm_run(files, program=path), "no checksum trailer")


# --- 8. the layout timeline's title ------------------------------------------------

def test_compare_layouts_svg_title_fits(tmp_path):
    """examples/python/compare_layouts.py --svg: the title names the layout and
    the picture is as wide as the title (0.6 em per monospace character)."""
    import html
    import re
    import sys

    layout = "E," + "|".join(["t*1"] * 24) + ",L"  # GPT-2 350M, one layer a stage
    svg = tmp_path / "best.svg"
    res = run([sys.executable, os.path.join(REPO, "examples", "python", "compare_layouts.py"),
               "--config", model_path("gpt2-350m"), "--pp", "4", "--layout", layout,
               "--svg", svg], env=dict(os.environ, PATH=BIN + os.pathsep + os.environ["PATH"]))
    assert res.returncode == 0, res.stdout + res.stderr
    text = svg.read_text()
    width = float(re.search(r'<svg [^>]*width="([0-9.]+)"', text).group(1))
    x, size, title = re.search(r'<text x="([0-9.]+)" y="[0-9.]+" font-size="([0-9.]+)">([^<]*)</text>',
                               text).groups()
    title = html.unescape(title)
    assert title.startswith(f"layout {layout}  interleaved: pp=4 vpp=6"), title
    assert float(x) + 0.6 * float(size) * len(title) <= width, (len(title), width)
