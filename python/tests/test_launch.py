"""Launching beyond `mpirun -np N` on one host: `mpirun --hostfile` (here a hostfile with localhost slots, as a
multi-node one lists each node's slots) runs the ranks of a dp=2 program like plain mpirun, and a launcher that
started more processes than MPI joined (srun without an MPI plugin) is a clear error, not N silent rank-0 runs."""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from test_e2e_cpu import compile_model, tool
from conftest import model_path
from llmir import safetensors
from llmir.config import load_config
from llmir.weights import random_tokens, random_weights, save_tokens

MPIRUN = shutil.which("mpirun")
pytestmark = pytest.mark.skipif(MPIRUN is None, reason="mpirun not installed")
ENV = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("launch")
    cfg = load_config(model_path("gpt2-tiny"))
    safetensors.save_file(random_weights(cfg, seed=2), str(d / "w.safetensors"))
    save_tokens(random_tokens(cfg.vocab_size, 600, seed=3), str(d / "t.npy"))
    prog = compile_model(model_path("gpt2-tiny"), d / "dp2.llmir", plan="dp=2", train=True, batch=4)
    return d, prog


def train(d, prog, launcher, name):
    log = d / f"{name}.jsonl"
    cmd = launcher + [tool("llm-run"), str(prog), "--weights", str(d / "w.safetensors"), "--data",
                      str(d / "t.npy"), "--steps", "3", "--log-json", str(log), "--quiet"]
    res = subprocess.run(["timeout", "-k", "10", "240"] + cmd, capture_output=True, text=True, env=ENV)
    assert res.returncode == 0, res.stderr
    return [json.loads(line)["loss"] for line in log.read_text().splitlines()]


def test_hostfile_launch_matches_plain_mpirun(files):
    d, prog = files
    (d / "hosts").write_text("localhost slots=2\n")
    with_hostfile = train(d, prog, [MPIRUN, "--allow-run-as-root", "--hostfile", str(d / "hosts"), "-np", "2"],
                          "hostfile")
    plain = train(d, prog, [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", "2"], "plain")
    assert len(with_hostfile) == 3 and with_hostfile == plain
    assert np.isfinite(with_hostfile).all()


def test_more_processes_than_mpi_sees_is_an_error(files):
    d, prog = files
    env = dict(ENV, SLURM_STEP_NUM_TASKS="2", SLURM_PROCID="0", SLURM_LOCALID="0")
    res = subprocess.run(["timeout", "-k", "10", "120", tool("llm-run"), str(prog), "--weights",
                          str(d / "w.safetensors"), "--data", str(d / "t.npy")],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 1
    assert "SLURM_STEP_NUM_TASKS=2 processes were started but MPI sees 1" in res.stderr
    assert "srun --mpi=pmix" in res.stderr
