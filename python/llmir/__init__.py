"""LLMIR Python package: model builders and the compile/run driver, safetensors I/O, HF config loading,
deterministic inputs and the PyTorch numeric oracle.

``llmir.reference`` needs torch and is not imported here, so the rest works with numpy alone.
"""

from .builder import Builder, BuiltModel, ShapeError
from .checkpoint import Checkpoint, load_checkpoint, save_state_dict
from .config import ModelConfig, config_from_dict, load_config
from .driver import CompileError, Plan, Program, RunError, compile, tool_path
from .models import GPT2, Llama, from_hf_config
from .hf import load_hf, save_hf
from .pipeline import simulate_schedule
from .plot import plot_log
from .planner import auto_plan, plan_from_layout
from .weights import num_params, param_shapes, random_tokens, random_weights

__version__ = "0.1.0"

__all__ = [
    "Builder",
    "BuiltModel",
    "ShapeError",
    "Checkpoint",
    "CompileError",
    "GPT2",
    "Llama",
    "Plan",
    "auto_plan",
    "plan_from_layout",
    "Program",
    "RunError",
    "compile",
    "from_hf_config",
    "simulate_schedule",
    "tool_path",
    "ModelConfig",
    "config_from_dict",
    "load_checkpoint",
    "load_config",
    "load_hf",
    "plot_log",
    "save_hf",
    "save_state_dict",
    "num_params",
    "param_shapes",
    "random_tokens",
    "random_weights",
    "__version__",
]
