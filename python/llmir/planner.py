"""`llmir.auto_plan`: the compiler's planner (--llm-auto-partition) from Python.

The planner searches dp x cp x tp x pp x vpp x micro-batches x schedule x recompute x
ZeRO x sequence parallelism for the layout with the lowest simulated step time
that fits the devices' memory (see `llm-opt --help`, "--llm-auto-partition"),
and returns it as a `Plan` for `llmir.compile`.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Dict, List, Optional, Union

from .config import ModelConfig, config_from_dict
from .driver import CompileError, Plan, _config_dict, _errors, _run_tool, tool_path

__all__ = ["auto_plan", "plan_from_layout"]


def plan_from_layout(layout: str) -> Plan:
    """A Plan from the planner's layout string, e.g.
    "dp=2 tp=2 pp=1 vpp=1 microbatches=1 schedule=1f1b recompute=none sp=true zero=1"."""
    fields: Dict[str, object] = {}
    for item in layout.split():
        key, _, value = item.partition("=")
        if key in ("dp", "cp", "tp", "pp", "vpp", "microbatches", "zero"):
            fields[key] = int(value)
        elif key == "sp":
            fields[key] = value == "true"
        elif key == "reshard-after-forward":
            fields["reshard_after_forward"] = value == "true"
        elif key in ("schedule", "recompute", "layout"):
            fields[key] = value
        else:
            raise ValueError(f"plan_from_layout: unknown field {key!r} in {layout!r}")
    if fields.get("schedule") not in ("interleaved", "zb-v"):
        fields.pop("vpp", None)
    return Plan(**fields)


def auto_plan(model: Union[ModelConfig, dict, str, "object"], cluster: str = "cpu,ranks=4",
              batch: Optional[int] = None, seq: int = 0, top_k: int = 5,
              details: bool = False) -> Union[Plan, tuple]:
    """The fastest layout of `model` (a config, HF config dict/path, or a
    llmir.Builder model) at `batch` x `seq` on `cluster` ("cpu,ranks=4",
    "nodes=2,gpus-per-node=8,gpu=h100-80g", ...). With `details`, returns
    (plan, report): the planner's JSON report with the top-k layouts, their
    predicted step time, MFU, bubble and memory per rank, and the reason the
    best one wins. Raises CompileError when the model fits no layout (the
    message says how much memory it would need)."""
    with tempfile.TemporaryDirectory(prefix="llmir-plan-") as work:
        model_ir = os.path.join(work, "model.mlir")
        if hasattr(model, "to_mlir"):
            model.save(model_ir)
        else:
            config = _config_dict(model)
            config_from_dict(config)  # validates like the tools
            cfg_path = os.path.join(work, "config.json")
            with open(cfg_path, "w") as f:
                json.dump(config, f)
            args = [tool_path("llm-translate"), "--import-hf-config", cfg_path,
                    "--batch", str(batch or 1), "-o", model_ir]
            if seq:
                args += ["--seq", str(seq)]
            res = _run_tool(args)
            if res.returncode != 0:
                raise CompileError(_errors(res.stderr))
        options = f"cluster={cluster} apply=false json=true top-k={int(top_k)}"
        res = _run_tool([tool_path("llm-opt"), model_ir, f"--llm-auto-partition={options}",
                         "-o", os.devnull])
    if res.returncode != 0:  # drop the temporary module's location
        raise CompileError(_errors(res.stderr).replace(f"{model_ir}:1:1: ", ""))
    report = json.loads(res.stdout.decode())
    top: List[dict] = report.get("top", [])
    if not top:
        raise CompileError("error: the planner returned no layout")
    plan = plan_from_layout(top[0]["layout"])
    return (plan, report) if details else plan
