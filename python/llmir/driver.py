"""Compile and run LLMIR programs from Python.

    import llmir
    model = llmir.GPT2(n_layer=2, n_embd=64, n_head=4, vocab_size=256, n_positions=64)
    plan = llmir.Plan(dp=2, tp=2)
    prog = llmir.compile(model, plan, batch=4, seq=32, train=True)
    for step in prog.run(weights="w.safetensors", data="tokens.npy", steps=10, lr=1e-3):
        print(step["step"], step["loss"])

The driver calls the same tools a user runs (llm-translate, llm-opt, llm-run);
it finds them in $LLMIR_BUILD_DIR/bin, next to this source tree's build/bin,
or on PATH.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import tempfile
from typing import Dict, Iterator, List, Optional, Union

from .config import ModelConfig, config_from_dict

__all__ = ["Plan", "Program", "CompileError", "RunError", "compile", "tool_path"]


class CompileError(RuntimeError):
    """The compiler rejected the model or the plan (message: its diagnostics)."""


class RunError(RuntimeError):
    """llm-run failed (message: its error lines)."""


def tool_path(name: str) -> str:
    """Path of an LLMIR tool (llm-translate, llm-opt, llm-run)."""
    candidates = []
    if os.environ.get("LLMIR_BUILD_DIR"):
        candidates.append(os.path.join(os.environ["LLMIR_BUILD_DIR"], "bin", name))
    here = os.path.dirname(os.path.abspath(__file__))
    candidates.append(os.path.join(here, "..", "..", "build", "bin", name))
    for c in candidates:
        if os.access(c, os.X_OK):
            return os.path.abspath(c)
    found = shutil.which(name)
    if found:
        return found
    raise FileNotFoundError(
        f"{name} not found: build LLMIR (bash scripts/test.sh) or set LLMIR_BUILD_DIR")


@dataclasses.dataclass
class Plan:
    """A parallel layout, as `llm-opt --llm-partition` takes it.

    `rules` chooses the tensor-parallel split per weight without C++: an
    ordered {weight glob: "column" | "row" | "replicate" | "default"} (first
    match wins, e.g. {"h.*.mlp.c_fc.weight": "column", "h.*": "replicate"});
    `vocab_parallel=False` keeps the token embedding whole. The compiler
    validates them like any strategy: an impossible choice, or a glob that
    matches no weight, is a CompileError naming the op or the rule."""
    dp: int = 1
    tp: int = 1
    sp: bool = False
    zero: int = 0
    recompute: str = "none"
    rules: Optional[Dict[str, str]] = None
    vocab_parallel: bool = True

    @property
    def ranks(self) -> int:
        return self.dp * self.tp

    def option(self, workdir: Optional[str] = None) -> str:
        """The --llm-partition options; with rules, writes them to
        `workdir`/partition.rules (a temporary directory when None)."""
        opt = (f"dp={self.dp} tp={self.tp} sp={str(self.sp).lower()} "
               f"zero={self.zero} recompute={self.recompute}")
        if self.rules is None and self.vocab_parallel:
            return opt
        lines = [f"{glob} {rule}" for glob, rule in (self.rules or {}).items()]
        if any(len(line.split()) != 2 for line in lines):
            raise ValueError(f"rules: globs and rules must be single words, got {self.rules!r}")
        lines.append(f"vocab-parallel-embedding {str(self.vocab_parallel).lower()}")
        path = os.path.join(workdir or tempfile.mkdtemp(prefix="llmir-"), "partition.rules")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return f"{opt} rules={path}"


def _config_dict(model: Union[ModelConfig, dict, str]) -> dict:
    if isinstance(model, str):
        with open(model) as f:
            return json.load(f)
    if isinstance(model, ModelConfig):
        return model.to_hf_dict()
    return dict(model)


def _run_tool(args: List[str], stdin: Optional[bytes] = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, input=stdin, capture_output=True)


def _errors(stderr: bytes) -> str:
    text = stderr.decode(errors="replace")
    lines = [l for l in text.splitlines() if "error" in l]
    return "\n".join(lines) if lines else text.strip()


class Program:
    """A compiled .llmir program (and the exec IR it came from)."""

    def __init__(self, path: str, exec_ir: str, plan: Plan, config: dict, batch: int,
                 seq: int, train: bool, workdir: str):
        self.path = path
        self.exec_ir = exec_ir
        self.plan = plan
        self.config = config
        self.batch = batch
        self.seq = seq
        self.train = train
        self.workdir = workdir

    def memory(self) -> Dict[str, int]:
        """The static memory plan of one rank, in bytes (arena = predicted peak)."""
        with open(self.exec_ir) as f:
            head = f.read(4096)
        return {k: int(v) for k, v in re.findall(r"(\w+_bytes) = (\d+)", head)}

    def run(self, weights: str, data: str, steps: int = 1, lr: float = 3e-4,
            weight_decay: float = 0.0, save_checkpoint: Optional[str] = None,
            resume: Optional[str] = None, timeout: float = 600) -> Iterator[dict]:
        """Runs llm-run (under mpirun when the plan has several ranks) and
        yields one dict per step: {"step" (from 0), "loss", "tokens_per_s", "step_ms"}."""
        log = os.path.join(self.workdir, "log.jsonl")
        if os.path.exists(log):
            os.remove(log)
        cmd = [tool_path("llm-run"), self.path, "--weights", weights, "--data", data,
               "--steps", str(steps), "--log-json", log, "--quiet"]
        if self.train:
            cmd += ["--lr", str(lr), "--weight-decay", str(weight_decay)]
        else:
            cmd += ["--eval"]
        if save_checkpoint:
            cmd += ["--save-checkpoint", save_checkpoint]
        if resume:
            cmd += ["--resume", resume]
        if self.plan.ranks > 1:
            mpirun = shutil.which("mpirun")
            if not mpirun:
                raise RunError("mpirun not found (install openmpi-bin)")
            cmd = [mpirun, "--oversubscribe", "--allow-run-as-root", "-np",
                   str(self.plan.ranks)] + cmd
        # Ranks share the machine's cores: give each its share, and keep
        # OpenMP/OpenBLAS worker threads from spinning (with 4 ranks on 2 cores,
        # spinning workers make steps ~40x slower).
        env = dict(os.environ)
        threads = str(max(1, (os.cpu_count() or 1) // self.plan.ranks))
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        env.setdefault("OMP_NUM_THREADS", threads)
        env.setdefault("OPENBLAS_NUM_THREADS", threads)
        res = subprocess.run(cmd, capture_output=True, timeout=timeout, env=env)
        if res.returncode != 0:
            raise RunError(_errors(res.stderr))
        with open(log) as f:
            for line in f:
                yield json.loads(line)

    def explain(self) -> str:
        """The partitioner's decisions (explain=true) for this model and plan."""
        return self._opt_text([f"--llm-partition={self.plan.option(self.workdir)} explain=true"])

    def comm_report(self) -> str:
        """Collectives per layer and grid axis with bytes per rank."""
        passes = [f"--llm-partition={self.plan.option(self.workdir)}"]
        if self.train:
            passes.append("--tfm-build-train-step")
        return self._opt_text(passes + ["--llm-comm-report"])

    def _opt_text(self, passes: List[str]) -> str:
        model = os.path.join(self.workdir, "model.mlir")
        res = _run_tool([tool_path("llm-opt"), model, *passes, "-o", os.devnull])
        if res.returncode != 0:
            raise CompileError(_errors(res.stderr))
        return res.stdout.decode()


def compile(model: Union[ModelConfig, dict, str], plan: Optional[Plan] = None,
            batch: int = 1, seq: int = 0, train: bool = False,
            workdir: Optional[str] = None) -> Program:
    """Compiles a model (HF config dict/path, or a builder model) for `plan`.

    train=True builds the training step (autodiff + AdamW); otherwise the
    forward pass returning the loss. Raises CompileError with the compiler's
    diagnostics on an invalid model or an impossible plan."""
    plan = plan or Plan()
    config = _config_dict(model)
    config_from_dict(config)  # validates the fields the same way the tools do
    workdir = workdir or tempfile.mkdtemp(prefix="llmir-")
    os.makedirs(workdir, exist_ok=True)
    cfg_path = os.path.join(workdir, "config.json")
    with open(cfg_path, "w") as f:
        json.dump(config, f)
    model_ir = os.path.join(workdir, "model.mlir")
    args = [tool_path("llm-translate"), "--import-hf-config", cfg_path, "--batch", str(batch),
            "-o", model_ir]
    if seq:
        args += ["--seq", str(seq)]
    res = _run_tool(args)
    if res.returncode != 0:
        raise CompileError(_errors(res.stderr))
    passes = [f"--llm-partition={plan.option(workdir)}"]
    if train:
        passes.append("--tfm-build-train-step")
    passes.append("--llm-lower-to-exec")
    exec_ir = os.path.join(workdir, "model.exec.mlir")
    res = _run_tool([tool_path("llm-opt"), model_ir, *passes, "-o", exec_ir])
    if res.returncode != 0:
        raise CompileError(_errors(res.stderr))
    prog = os.path.join(workdir, "model.llmir")
    res = _run_tool([tool_path("llm-translate"), "--export-program", exec_ir, "-o", prog])
    if res.returncode != 0:
        raise CompileError(_errors(res.stderr))
    return Program(prog, exec_ir, plan, config, batch, seq, train, workdir)
