"""PyTorch state_dicts in, LLMIR checkpoints out.

    import llmir
    llmir.save_state_dict(model.state_dict(), "w.safetensors", config=cfg)   # the weights llm-run reads
    ck = llmir.load_checkpoint("ckpt/")          # what llm-run --save-checkpoint wrote
    ck["h.0.attn.c_attn.weight"], ck.step, ck.plan, ck.params(), ck.optimizer_state()

Names follow weights.py's conventions (Hugging Face names of the bare model):
a GPT2LMHeadModel's ``transformer.`` prefix is stripped, buffers are dropped,
and a tied ``lm_head.weight`` is left out.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Union

import numpy as np

from . import safetensors
from .config import ModelConfig, load_config
from .weights import canonical_params, check_param_table, normalize_params

__all__ = ["Checkpoint", "save_state_dict", "load_checkpoint", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "llmir-checkpoint-1"  # the "format" metadata llm-run writes and checks on --resume
_STATE_SUFFIXES = (".exp_avg_sq", ".exp_avg")


def save_state_dict(state_dict: Mapping[str, Any], path: Union[str, os.PathLike],
                    config: Union[ModelConfig, dict, str, Any, None] = None) -> Dict[str, Any]:
    """Writes a state_dict (torch tensors, or numpy arrays) as the HF-named
    safetensors weights file llm-run reads (atomically; dtypes kept, bf16 included).

    With `config` (a GPT2/Llama config, HF config dict or path, or a
    llmir.Builder model), the tensors must be exactly that model's parameters
    (after the name conventions) and are written in its order; a missing,
    unexpected or mis-shaped one raises ValueError naming it. Returns the
    written {name: tensor}."""
    where = os.fspath(path)
    meta = {"format": "pt"}
    if config is None or hasattr(config, "to_mlir"):  # no config, or a builder model
        try:
            params = canonical_params(state_dict)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        if config is not None:
            check_param_table(config.param_shapes(), params, where, "the builder model")
            params = {n: params[n] for n in config.param_shapes()}
    else:
        cfg = config if isinstance(config, ModelConfig) else load_config(config)
        params = normalize_params(cfg, state_dict, where=where)
        meta["model_type"] = cfg.model_type
    tensors = {n: _tensor(n, t) for n, t in params.items()}
    safetensors.save_file(tensors, path, metadata=meta)
    return tensors


def _tensor(name: str, t: Any) -> Any:
    if isinstance(t, (np.ndarray, safetensors.BF16)) or type(t).__module__.startswith("torch"):
        return t
    try:
        return np.asarray(t)
    except Exception:
        raise TypeError(f"tensor '{name}': expected a torch tensor or numpy array, got {type(t).__name__}") from None


class Checkpoint(dict):
    """An LLMIR checkpoint: {HF name (+ ".exp_avg" / ".exp_avg_sq" AdamW moments): numpy array},
    with `step` (the next step to run), `plan` ("dp=2 tp=2"), `model_type` and the raw `metadata`."""

    def __init__(self, tensors: Dict[str, np.ndarray], metadata: Dict[str, str]):
        super().__init__(tensors)
        self.metadata = dict(metadata)
        self.step = int(metadata["step"])
        self.plan = metadata.get("plan", "")
        self.model_type = metadata.get("model_type", "")

    def params(self) -> Dict[str, np.ndarray]:
        """The parameters (what --weights takes), without the optimizer state."""
        return {n: t for n, t in self.items() if not n.endswith(_STATE_SUFFIXES)}

    def optimizer_state(self) -> Dict[str, np.ndarray]:
        """The AdamW moments, "<param>.exp_avg" and "<param>.exp_avg_sq"."""
        return {n: t for n, t in self.items() if n.endswith(_STATE_SUFFIXES)}


def load_checkpoint(path: Union[str, os.PathLike]) -> Checkpoint:
    """Reads a checkpoint written by `llm-run --save-checkpoint DIR` (DIR or
    DIR/checkpoint.safetensors). Raises ValueError for a file that is not an
    LLMIR checkpoint (like `llm-run --resume` does)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "checkpoint.safetensors")
    infos, meta = safetensors.read_header(path)
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"'{path}' is not an LLMIR checkpoint (format {meta.get('format')!r}, "
                         f"expected {CHECKPOINT_FORMAT!r})")
    step = meta.get("step", "")
    if not step.isdigit():
        raise ValueError(f"'{path}' has no valid step (found {step!r})")
    return Checkpoint(safetensors.load_file(path), meta)
