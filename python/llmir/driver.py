"""Compile and run LLMIR programs from Python.

    import llmir
    model = llmir.GPT2(n_layer=2, n_embd=64, n_head=4, vocab_size=256, n_positions=64)
    plan = llmir.Plan(dp=2, tp=2)
    prog = llmir.compile(model, plan, batch=4, seq=32, train=True)
    for step in prog.run(weights="w.safetensors", data="tokens.npy", steps=10, lr=1e-3):
        print(step["step"], step["loss"])

Pipeline plans (`Plan(pp=4, microbatches=8, schedule="1f1b", layout=...)`)
add --llm-pipeline-split to the compile; `plan.simulate(model)` /
`prog.simulate()` time their schedule. `llmir.Builder` models compile like
configs.

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
import time
import weakref
from typing import TYPE_CHECKING, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from .config import ModelConfig, config_from_dict

if TYPE_CHECKING:
    from . import builder

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


# The compiler's list (include/llmir/Partition/Pipeline/ScheduleKinds.h; test_plan.py checks they agree) and the
# V-placed ones, which always run two chunks per rank.
SCHEDULES = ("gpipe", "1f1b", "interleaved", "zb-h1", "zb-h2", "zb-v", "v-half", "v-min", "dualpipev")
V_SCHEDULES = ("zb-v", "v-half", "v-min", "dualpipev")

_LAYOUT_ITEM = re.compile(r"^(E|L|t)(?:\*(\d+))?$")
_ACTION = re.compile(r"^[FBIW]\d+s\d+$")


@dataclasses.dataclass
class Plan:
    """A parallel layout, as `llm-opt --llm-partition` takes it.

    `rules` chooses the tensor-parallel split per weight without C++: an
    ordered {weight glob: "column" | "row" | "replicate" | "default"} (first
    match wins, e.g. {"h.*.mlp.c_fc.weight": "column", "h.*": "replicate"});
    `vocab_parallel=False` keeps the token embedding whole. The compiler
    validates them like any strategy: an impossible choice, or a glob that
    matches no weight, is a CompileError naming the op or the rule.

    Pipeline parallelism: `pp` stages, `vpp` model chunks per stage
    (schedule "interleaved"), `microbatches` per step (they split each data
    parallel rank's batch rows in order) and the `schedule` ("gpipe", "1f1b",
    "interleaved", "zb-h1"). `layout` places the model on the pp * vpp virtual
    stages, "|" between stages, "," between items: E (embedding), t or t*N
    (N decoder layers), L (final norm, LM head and loss), e.g. "E,t*2|t*2,L".
    `schedule_actions` replaces the built schedule with your own: one action
    list per pipeline rank (F|B|I|W<micro-batch>s<stage>, e.g.
    [["F0s0", "F1s0", "B0s0", "B1s0"], ["F0s1", "B0s1", "F1s1", "B1s1"]]) or
    the same as text ("rank 0: F0s0 F1s0 ..." lines).

    Context parallelism: `cp` ranks split each sequence into 2·cp zig-zag
    chunks (not with `sp`). Ranks = pp * dp * cp * tp.

    A field that makes no sense raises ValueError here; a plan that does not
    fit the model or the batch is a CompileError from llmir.compile."""
    dp: int = 1
    tp: int = 1
    sp: bool = False
    zero: int = 0
    recompute: str = "none"
    rules: Optional[Dict[str, str]] = None
    vocab_parallel: bool = True
    pp: int = 1
    microbatches: int = 1
    schedule: str = "1f1b"
    vpp: int = 1
    layout: Optional[str] = None
    schedule_actions: Optional[Union[str, Sequence[Sequence[str]]]] = None
    reshard_after_forward: bool = True  # zero=3: gather again for the backward
    cp: int = 1  # context parallelism: the sequence split over cp ranks

    def __post_init__(self):
        for name in ("dp", "tp", "cp", "pp", "vpp", "microbatches"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"Plan: {name} must be an integer >= 1, got {v!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"Plan: unknown schedule {self.schedule!r} (expected {', '.join(SCHEDULES)})")
        if self.schedule == "interleaved" and self.vpp < 2:
            raise ValueError(f"Plan: schedule 'interleaved' needs vpp >= 2, got vpp={self.vpp}")
        if self.schedule in V_SCHEDULES and self.vpp not in (1, 2):
            raise ValueError(f"Plan: schedule {self.schedule!r} runs 2 chunks per rank, got vpp={self.vpp}")
        if self.schedule in V_SCHEDULES:
            self.vpp = 2  # the V placement: rank r runs stages r and 2pp-1-r
        if self.schedule != "interleaved" and self.schedule not in V_SCHEDULES and self.vpp != 1:
            raise ValueError(f"Plan: vpp={self.vpp} needs schedule='interleaved', got {self.schedule!r}")
        if self.vpp > 1 and self.pp < 2:
            raise ValueError(f"Plan: vpp={self.vpp} needs pp >= 2, got pp={self.pp}")
        if self.layout is not None:
            self.layout = "".join(str(self.layout).split())
            self.layout_stages()  # validates
        if self.cp > 1 and self.sp:
            raise ValueError(f"Plan: cp={self.cp} with sp=True: both split the sequence")
        if not self.reshard_after_forward and self.zero != 3:
            raise ValueError(f"Plan: reshard_after_forward=False needs zero=3, got zero={self.zero}")
        if self.schedule_actions is not None:
            self.schedule_actions = self._normalize_actions(self.schedule_actions)

    @property
    def ranks(self) -> int:
        return self.dp * self.cp * self.tp * self.pp

    @property
    def pipelined(self) -> bool:
        """True when the step runs as a pipeline schedule (pp > 1 or several micro-batches)."""
        return self.pp > 1 or self.microbatches > 1

    def layout_stages(self) -> List[List[Tuple[str, int]]]:
        """The layout as one [(item, count)] list per virtual stage (item "E", "t" or "L");
        [] without a layout. Raises ValueError for a malformed layout (the
        compiler's grammar: E first in stage 0, L last in the last stage, no
        empty stage)."""
        if self.layout is None:
            return []
        text = self.layout
        stages = text.split("|")
        if len(stages) != self.pp * self.vpp:
            raise ValueError(f"Plan: layout {text!r} has {len(stages)} stages, expected pp * vpp = "
                             f"{self.pp * self.vpp}")
        out = []
        for s, stage in enumerate(stages):
            items = [item for item in stage.split(",") if item]
            parsed = []
            for i, item in enumerate(items):
                m = _LAYOUT_ITEM.match(item)
                if not m or (m.group(2) is not None and m.group(1) != "t"):
                    raise ValueError(f"Plan: layout {text!r}: stage {s}: bad item {item!r} "
                                     f"(expected E, L, t or t*N)")
                if item == "E" and (s, i) != (0, 0):
                    raise ValueError(f"Plan: layout {text!r}: stage {s}: E (the embedding) must come first "
                                     f"in stage 0")
                if item == "L" and (s, i) != (len(stages) - 1, len(items) - 1):
                    raise ValueError(f"Plan: layout {text!r}: stage {s}: L (the head) must come last in the "
                                     f"last stage")
                parsed.append((m.group(1), int(m.group(2) or 1)))
            if not any(kind != "t" or n > 0 for kind, n in parsed):
                raise ValueError(f"Plan: layout {text!r}: stage {s} is empty")
            out.append(parsed)
        if out[0][0][0] != "E":
            raise ValueError(f"Plan: layout {text!r}: stage 0 must start with E (the embedding)")
        if out[-1][-1][0] != "L":
            raise ValueError(f"Plan: layout {text!r}: the last stage must end with L (the head)")
        return out

    def layout_layers(self) -> int:
        """Decoder layers the layout places (0 without a layout)."""
        return sum(n for items in self.layout_stages() for k, n in items if k == "t")

    def _normalize_actions(self, actions) -> List[List[str]]:
        if isinstance(actions, str):
            ranks: List[List[str]] = []
            for n, line in enumerate(actions.splitlines(), 1):
                line = line.split("#")[0].strip()
                if not line:
                    continue
                m = re.match(r"rank\s+(\d+)\s*:(.*)$", line)
                if not m or int(m.group(1)) != len(ranks):
                    raise ValueError(f"Plan: schedule_actions line {n}: expected 'rank {len(ranks)}: ...', "
                                     f"got {line!r}")
                ranks.append(m.group(2).split())
        else:
            ranks = [list(r) if not isinstance(r, str) else r.split() for r in actions]
        if len(ranks) != self.pp:
            raise ValueError(f"Plan: schedule_actions has {len(ranks)} rank(s), expected pp={self.pp}")
        for r, acts in enumerate(ranks):
            for a in acts:
                if not isinstance(a, str) or not _ACTION.match(a):
                    raise ValueError(f"Plan: schedule_actions rank {r}: bad action {a!r} "
                                     f"(expected F|B|I|W<micro-batch>s<stage>, e.g. F0s1)")
        return ranks

    def option(self, workdir: Optional[str] = None) -> str:
        """The --llm-partition options; with rules, writes them to
        `workdir`/partition.rules (a temporary directory when None)."""
        cp = f" cp={self.cp}" if self.cp > 1 else ""
        opt = (f"dp={self.dp}{cp} tp={self.tp} sp={str(self.sp).lower()} "
               f"zero={self.zero} recompute={self.recompute}")
        if self.pipelined or self.layout is not None:
            opt += (f" pp={self.pp} vpp={self.vpp} microbatches={self.microbatches} "
                    f"schedule={self.schedule}")
            if self.layout is not None:
                opt += f" layout={self.layout}"
        if not self.reshard_after_forward:
            opt += " reshard-after-forward=false"
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

    def passes(self, train: bool = False, workdir: Optional[str] = None, grad_norm: bool = False) -> List[str]:
        """The llm-opt pass arguments that compile a model for this plan:
        --llm-partition, --tfm-build-train-step (train; with grad_norm, the step
        computes the global gradient norm that clipping needs), --llm-pipeline-split
        (pipelined; with schedule_actions written to `workdir`/schedule.txt),
        --llm-lower-to-exec."""
        workdir = workdir or tempfile.mkdtemp(prefix="llmir-")
        passes = [f"--llm-partition={self.option(workdir)}"]
        if train:
            passes.append("--tfm-build-train-step" + ("=grad-norm=true" if grad_norm else ""))
        if self.pipelined:
            if self.schedule_actions is not None:
                from .pipeline import format_schedule

                path = os.path.join(workdir, "schedule.txt")
                with open(path, "w") as f:
                    f.write(format_schedule(self.schedule_actions))
                passes.append(f"--llm-pipeline-split=schedule-file={path}")
            else:
                passes.append("--llm-pipeline-split")
        passes.append("--llm-lower-to-exec")
        return passes

    def simulate(self, model: object = None, seq: int = 0, tf: float = 1.0, tb: float = 2.0,
                 ti: Optional[float] = None, tw: Optional[float] = None, tcomm: float = 0.0,
                 svg: Optional[str] = None) -> Dict[str, object]:
        """Simulates this plan's pipeline schedule (built by the compiler's
        --llm-pipeline-schedule, or `schedule_actions`); needs no compiled program.

        Costs are per micro-batch through the whole model: `tf` forward, `tb`
        full backward (`ti` + `tw`, its input- and weight-grad halves, default
        tb/2 each), `tcomm` per cross-rank message. Each pipeline rank's share
        comes from the layout, weighing decoder layers and the LM head by their
        FLOPs at `seq` tokens per sequence (embedding lookups cost nothing; the
        `model` is needed for a layout); without a layout the ranks share the
        model evenly. Each virtual stage's actions take its share of the
        model's time (`stage-costs` of --llm-pipeline-schedule), so an uneven
        layout's step time and bubble are simulated exactly.

        Returns simulate_schedule's dict ("ranks", "makespan", "peak_in_flight",
        ...) with "step_time" (= makespan), "bubble" (idle share of the step
        over all ranks), "busy" (per rank) and "rank_loads" (per-rank share);
        with `svg`, also writes the timeline there (titled with the layout)."""
        from .pipeline import simulate_schedule

        loads = self.rank_loads(model, seq)
        ti = tb / 2 if ti is None else ti
        tw = tb / 2 if tw is None else tw
        stages = self.stage_loads(model, seq)
        n = len(stages)
        # --llm-pipeline-schedule's costs are per rank's share (a chunk takes
        # t / vpp); stage weights scale each chunk from the even split.
        sim = simulate_schedule(self.pp, self.microbatches, self.schedule, self.vpp,
                                actions=self.schedule_actions, tf=tf / self.pp, tb=tb / self.pp,
                                ti=ti / self.pp, tw=tw / self.pp, tcomm=tcomm, svg=svg,
                                svg_caption=f"layout {self.layout}" if self.layout else "",
                                stage_costs=[w * n for w in stages] if self.layout else None)
        sim.update(step_time=sim["makespan"], rank_loads=loads, layout=self.layout)
        return sim

    def rank_of_stage(self, stage: int) -> int:
        """The pipeline rank running virtual stage `stage`: stage % pp (loop
        placement), or ZB-V's V (rank r runs stages r and 2pp-1-r)."""
        if self.schedule == "zb-v" and stage >= self.pp:
            return 2 * self.pp - 1 - stage
        return stage % self.pp

    def rank_loads(self, model: object = None, seq: int = 0) -> List[float]:
        """Each pipeline rank's share of a micro-batch's work (they add up to 1): even
        without a layout; with one, from `model`'s layer and LM-head FLOPs at `seq`
        (default: the model's positions)."""
        loads = [0.0] * self.pp
        for s, load in enumerate(self.stage_loads(model, seq)):
            loads[self.rank_of_stage(s)] += load
        return loads

    def stage_loads(self, model: object = None, seq: int = 0) -> List[float]:
        """Each virtual stage's share of a micro-batch's work (even without a layout)."""
        stages = self.layout_stages()
        if not stages:
            n = self.pp * self.vpp
            return [1.0 / n] * n
        if model is None:
            raise ValueError("Plan.rank_loads: a layout's loads need the model")
        layer_costs, head, embedding = _unit_costs(model, seq)
        if self.layout_layers() != len(layer_costs):
            raise ValueError(f"Plan: layout {self.layout!r} places {self.layout_layers()} layers, "
                             f"the model has {len(layer_costs)}")
        stage_cost, next_layer = [], 0
        for items in stages:
            cost = 0.0
            for kind, n in items:
                if kind == "t":
                    cost += sum(layer_costs[next_layer:next_layer + n])
                    next_layer += n
                else:
                    cost += head if kind == "L" else embedding
            stage_cost.append(cost)
        total = sum(stage_cost) or 1.0
        return [c / total for c in stage_cost]

    def check(self, batch: int, num_layers: Optional[int] = None) -> None:
        """Raises CompileError when the micro-batches do not split each data-parallel
        rank's rows of `batch` or the layout does not place `num_layers` layers."""
        if batch % self.dp == 0 and (batch // self.dp) % self.microbatches:  # dp: the partitioner says
            raise CompileError(f"error: plan: microbatches={self.microbatches} does not divide the "
                               f"{batch // self.dp} batch rows of each data-parallel rank (batch {batch} / dp={self.dp})")
        if self.layout is not None and num_layers is not None and self.layout_layers() != num_layers:
            raise CompileError(f"error: plan: layout {self.layout!r} places {self.layout_layers()} layers, "
                               f"the model has {num_layers}")


def _config_dict(model: Union[ModelConfig, dict, str]) -> dict:
    if isinstance(model, str):
        with open(model) as f:
            return json.load(f)
    if isinstance(model, ModelConfig):
        return model.to_hf_dict()
    return dict(model)


def _flag(name: str) -> str:
    """A Program.run keyword as llm-run's flag: clip_grad_norm -> --clip-grad-norm."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"Program.run: {name!r} is not an llm-run option name")
    return "--" + name.replace("_", "-")


def _as_weights(weights: object, tmp: str) -> str:
    """A weights path (file or HF directory) as it is; a dict of arrays written to `tmp`."""
    if isinstance(weights, (str, os.PathLike)):
        return os.fspath(weights)
    if not isinstance(weights, Mapping):
        raise TypeError(f"Program.run: weights must be a path or a dict of arrays, got {type(weights).__name__}")
    from .safetensors import save_file

    path = os.path.join(tmp, "weights.safetensors")
    save_file(weights, path)
    return path


def _as_tokens(data: object, tmp: str, name: str) -> str:
    """A token file or glob as it is; a 1-D integer array written to `tmp`/`name` (.npy)."""
    if isinstance(data, (str, os.PathLike)):
        return os.fspath(data)
    from .weights import save_tokens

    path = os.path.join(tmp, name)
    save_tokens(data, path)
    return path


def _run_tool(args: List[str], stdin: Optional[bytes] = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, input=stdin, capture_output=True)


def _errors(stderr: bytes) -> str:
    text = stderr.decode(errors="replace")
    lines = [l for l in text.splitlines() if "error" in l]
    return "\n".join(lines) if lines else text.strip()


class Program:
    """A compiled .llmir program (and the exec IR it came from)."""

    def __init__(self, path: str, exec_ir: str, plan: Plan, config: dict, batch: int,
                 seq: int, train: bool, workdir: str, model: object = None):
        self.path = path
        self.exec_ir = exec_ir
        self.plan = plan
        self.config = config
        self.batch = batch
        self.seq = seq
        self.train = train
        self.workdir = workdir
        self.model = model  # the ModelConfig or builder model it was compiled from

    def memory(self) -> Dict[str, int]:
        """The static memory plan of one rank, in bytes (arena = predicted peak)."""
        with open(self.exec_ir) as f:
            head = f.read(4096)
        return {k: int(v) for k, v in re.findall(r"(\w+_bytes) = (\d+)", head)}

    def run(self, weights: Union[str, Mapping[str, object]], data: object, steps: int = 1, lr: float = 3e-4,
            weight_decay: float = 0.0, save_checkpoint: Optional[str] = None,
            resume: Optional[str] = None, timeout: float = 600, *, eval_data: object = None,
            on_step: Optional[Callable[[dict], None]] = None, **options: object) -> Iterator[dict]:
        """Runs llm-run (under mpirun when the plan has several ranks) and yields one dict per step as the step
        finishes: {"step" (from 0), "loss", "tokens_per_s", "step_ms", ...} (and "lr", "grad_norm", "eval_loss" when
        the run has them); `on_step` is called with each too.

        `weights`: a safetensors file, a Hugging Face model directory, or a dict name -> array (HF names, written
        to a temporary file). `data` / `eval_data`: token files or globs as llm-run's --data takes, or 1-D integer
        arrays. `options` are further llm-run flags by name, e.g. ``lr_schedule="cosine", warmup_steps=10,
        clip_grad_norm=1.0, eval_every=50, export_hf="out/"`` (``True`` for a flag without a value). The temporary
        directory is removed when the run ends, fails or the generator is closed (which stops llm-run)."""
        tmp = tempfile.mkdtemp(prefix="llmir-run-")
        proc = None
        try:
            log = os.path.join(tmp, "log.jsonl")
            cmd = [tool_path("llm-run"), self.path, "--weights", _as_weights(weights, tmp),
                   "--data", _as_tokens(data, tmp, "data.npy"), "--steps", str(steps), "--log-json", log, "--quiet"]
            if self.train:
                cmd += ["--lr", str(lr), "--weight-decay", str(weight_decay)]
            else:
                cmd += ["--eval"]
            if save_checkpoint:
                cmd += ["--save-checkpoint", save_checkpoint]
            if resume:
                cmd += ["--resume", resume]
            if eval_data is not None:
                cmd += ["--eval-data", _as_tokens(eval_data, tmp, "eval.npy")]
            for name, value in options.items():
                if value is None or value is False:
                    continue
                cmd += [_flag(name)] + ([] if value is True else [str(value)])
            proc = self._start(cmd, os.path.join(tmp, "stderr.txt"))
            deadline = time.monotonic() + timeout
            with open(log, "a+") as f:  # llm-run truncates and appends; lines appear as steps end
                f.seek(0)
                pending = ""
                while True:
                    finished = proc.poll() is not None
                    pending += f.read()
                    *lines, pending = pending.split("\n")
                    for line in lines:
                        if line.strip():
                            step = json.loads(line)
                            if on_step:
                                on_step(step)
                            yield step
                    if finished:
                        break
                    if time.monotonic() > deadline:
                        raise RunError(f"llm-run did not finish within {timeout} s")
                    time.sleep(0.02)
            if proc.returncode != 0:
                with open(os.path.join(tmp, "stderr.txt"), "rb") as err:
                    raise RunError(_errors(err.read()))
        finally:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
            shutil.rmtree(tmp, ignore_errors=True)

    def generate(self, weights: str, prompts: "object", pad_id: int = 0,
                 lengths: Optional[Sequence[int]] = None, max_new_tokens: int = 16,
                 eos_id: Optional[int] = None, temperature: Optional[float] = None,
                 top_k: Optional[int] = None, top_p: Optional[float] = None,
                 seed: Optional[int] = None, timeout: float = 600) -> "object":
        """Text generation with an inference program (compile(..., inference=True)):
        `prompts` is a 2-D array of token ids, right-padded with `pad_id` (or
        with explicit `lengths`). Greedy unless `temperature`/`top_k`/`top_p`
        are given. Returns the generated ids, [batch, max_new_tokens], padded
        with `pad_id` after a sequence's `eos_id`."""
        import numpy as np

        prompt_file = os.path.join(self.workdir, "prompts.npy")
        out = os.path.join(self.workdir, "generated.npy")
        np.save(prompt_file, np.asarray(prompts, dtype=np.int64))
        cmd = [tool_path("llm-run"), self.path, "--weights", weights, "--generate",
               "--prompt", prompt_file, "--pad-id", str(pad_id),
               "--max-new-tokens", str(max_new_tokens), "--out", out, "--quiet"]
        if lengths is not None:
            lengths_file = os.path.join(self.workdir, "lengths.npy")
            np.save(lengths_file, np.asarray(lengths, dtype=np.int64))
            cmd += ["--lengths", lengths_file]
        for flag, value in (("--eos-id", eos_id), ("--temperature", temperature),
                            ("--top-k", top_k), ("--top-p", top_p), ("--seed", seed)):
            if value is not None:
                cmd += [flag, str(value)]
        self._launch(cmd, timeout)
        return np.load(out)

    def _launch(self, cmd: List[str], timeout: float) -> None:
        """Runs an llm-run command line to its end, under mpirun with the plan's ranks."""
        res = subprocess.run(self._command(cmd), capture_output=True, timeout=timeout, env=self._env())
        if res.returncode != 0:
            raise RunError(_errors(res.stderr))

    def _start(self, cmd: List[str], stderr_path: str) -> subprocess.Popen:
        """Starts an llm-run command line (like _launch), its stderr to `stderr_path`."""
        with open(stderr_path, "wb") as err:
            return subprocess.Popen(self._command(cmd), stdout=subprocess.DEVNULL, stderr=err, env=self._env())

    def _command(self, cmd: List[str]) -> List[str]:
        if self.plan.ranks > 1:
            mpirun = shutil.which("mpirun")
            if not mpirun:
                raise RunError("mpirun not found (install openmpi-bin)")
            cmd = [mpirun, "--oversubscribe", "--allow-run-as-root", "-np",
                   str(self.plan.ranks)] + cmd
        return cmd

    def _env(self) -> Dict[str, str]:
        # Ranks share the machine's cores: give each its share, and keep
        # OpenMP/OpenBLAS worker threads from spinning (with 4 ranks on 2 cores,
        # spinning workers make steps ~40x slower).
        env = dict(os.environ)
        threads = str(max(1, (os.cpu_count() or 1) // self.plan.ranks))
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        env.setdefault("OMP_NUM_THREADS", threads)
        env.setdefault("OPENBLAS_NUM_THREADS", threads)
        return env

    def explain(self) -> str:
        """The partitioner's decisions (explain=true) for this model and plan."""
        return self._opt_text([f"--llm-partition={self.plan.option(self.workdir)} explain=true"])

    def comm_report(self) -> str:
        """Collectives per layer and grid axis with bytes per rank."""
        passes = self.plan.passes(self.train, self.workdir)[:-1]  # all but --llm-lower-to-exec
        return self._opt_text(passes + ["--llm-comm-report"])

    def simulate(self, **costs: float) -> Dict[str, object]:
        """Plan.simulate for this program's model and sequence length: the
        pipeline schedule's step time, bubble and per-rank peak in-flight
        micro-batches (costs: tf, tb, ti, tw, tcomm, as Plan.simulate takes them)."""
        return self.plan.simulate(self.model, self.seq, **costs)

    def schedule_svg(self, path: str, **costs: float) -> str:
        """Writes the simulated pipeline timeline (SVG) to `path`; returns it."""
        self.plan.simulate(self.model, self.seq, svg=path, **costs)
        return path

    def _opt_text(self, passes: List[str]) -> str:
        model = os.path.join(self.workdir, "model.mlir")
        res = _run_tool([tool_path("llm-opt"), model, *passes, "-o", os.devnull])
        if res.returncode != 0:
            raise CompileError(_errors(res.stderr))
        return res.stdout.decode()


def _unit_costs(model: object, seq: int = 0) -> Tuple[List[float], float, float]:
    """(cost of each decoder layer, of the LM head, of the embedding) per token, in
    --tfm-model-stats' FLOP terms: matmul weights + 2 x seq x attention width."""
    costs = getattr(model, "costs", None)
    if costs is not None:  # a builder model counted its own ops
        return [float(c) for c in costs["layers"]], float(costs["head"]), float(costs["embedding"])
    from .weights import param_shapes

    cfg = model if isinstance(model, ModelConfig) else config_from_dict(_config_dict(model))
    per_layer = sum(shape[0] * shape[1] for name, shape in param_shapes(cfg).items()
                    if len(shape) == 2 and re.match(r"(h|model\.layers)\.0\.", name))
    per_layer += 2 * (seq or cfg.max_position_embeddings) * cfg.num_heads * cfg.head_dim
    return [float(per_layer)] * cfg.num_layers, float(cfg.vocab_size * cfg.hidden_size), 0.0


def compile(model: Union[ModelConfig, dict, str, "builder.BuiltModel"], plan: Optional[Plan] = None,
            batch: Optional[int] = None, seq: int = 0, train: bool = False,
            inference: bool = False, max_seq: int = 0, prompt_len: int = 0,
            workdir: Optional[str] = None, compute: str = "f32", grad_norm: bool = False) -> Program:
    """Compiles a model (a GPT2/Llama config, HF config dict/path, or a
    llmir.Builder model) for `plan`.

    train=True builds the training step (autodiff + AdamW); otherwise the
    forward pass returning the loss. A pipelined plan (pp > 1 or several
    micro-batches) adds --llm-pipeline-split after the training step. A builder
    model fixes batch and seq itself (passing others is an error); configs
    default to batch 1 and the config's positions. Raises CompileError with the
    compiler's diagnostics on an invalid model or an impossible plan.
    compute="bf16" adds --llm-mixed-precision (bf16 activations, f32 master
    weights; "f16" for inference only). grad_norm=True makes the training step
    compute the global gradient norm (logged; needed by clip_grad_norm=C)."""
    if compute not in ("f32", "bf16", "f16"):
        raise ValueError(f"compile: compute must be f32, bf16 or f16, got {compute!r}")
    plan = plan or Plan()
    owned = workdir is None
    workdir = workdir or tempfile.mkdtemp(prefix="llmir-")
    os.makedirs(workdir, exist_ok=True)
    model_ir = os.path.join(workdir, "model.mlir")
    if hasattr(model, "to_mlir"):  # a builder model
        if batch not in (None, model.batch) or seq not in (0, model.seq):
            raise ValueError(f"compile: this builder model has batch {model.batch} and seq {model.seq}; "
                             f"got batch={batch} seq={seq} (build another model to change them)")
        batch, seq = model.batch, model.seq
        config = dict(model.attrs)
        plan.check(batch, model.num_layers)
        model.save(model_ir)
    else:
        batch = 1 if batch is None else batch
        config = _config_dict(model)
        cfg = config_from_dict(config)  # validates the fields the same way the tools do
        plan.check(batch, cfg.num_layers)
        model = model if isinstance(model, ModelConfig) else cfg
        cfg_path = os.path.join(workdir, "config.json")
        with open(cfg_path, "w") as f:
            json.dump(config, f)
        args = [tool_path("llm-translate"), "--import-hf-config", cfg_path, "--batch", str(batch),
                "-o", model_ir]
        if inference:  # @prefill and @decode over a KV cache of max_seq positions
            if train:
                raise ValueError("compile: inference=True builds generation programs, not training steps")
            args += ["--inference"]
            if max_seq:
                args += ["--max-seq", str(max_seq)]
            if prompt_len:
                args += ["--prompt-len", str(prompt_len)]
        elif seq:
            args += ["--seq", str(seq)]
        res = _run_tool(args)
        if res.returncode != 0:
            raise CompileError(_errors(res.stderr))
        seq = seq or cfg.max_position_embeddings
    exec_ir = os.path.join(workdir, "model.exec.mlir")
    precision = [] if compute == "f32" else [f"--llm-mixed-precision=compute={compute}"]
    res = _run_tool([tool_path("llm-opt"), model_ir, *precision, *plan.passes(train, workdir, grad_norm),
                     "-o", exec_ir])
    if res.returncode != 0:
        raise CompileError(_errors(res.stderr))
    prog = os.path.join(workdir, "model.llmir")
    res = _run_tool([tool_path("llm-translate"), "--export-program", exec_ir, "-o", prog])
    if res.returncode != 0:
        raise CompileError(_errors(res.stderr))
    program = Program(prog, exec_ir, plan, config, batch, seq, train, workdir, model)
    if owned:  # the temporary directory lives as long as the Program
        weakref.finalize(program, shutil.rmtree, workdir, True)
    return program
