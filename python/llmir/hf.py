"""Hugging Face model directories in and out (numpy only; ``transformers`` is not needed).

A directory holds ``config.json`` and the weights: ``model.safetensors``, or shards
``model-0000k-of-0000n.safetensors`` listed by ``model.safetensors.index.json``
(``{"metadata": {"total_size": N}, "weight_map": {name: file}}``), in F32, BF16 or F16.

``load_hf(dir)`` returns the config and the parameters under the bare model's names (``weights.py``):
GPT2LMHeadModel's ``transformer.`` prefix is dropped, a tied ``lm_head.weight`` and buffers are ignored.
``save_hf(dir, cfg, params)`` writes what ``save_pretrained`` writes: GPT-2 names with the ``transformer.``
prefix (Conv1D weights stay ``[in, out]``, as LLMIR and HF both store them), LLaMA names as they are, no tied
``lm_head``, ``config.json`` from the config with ``torch_dtype`` and ``architectures``, the tokenizer files of
``tokenizer_from`` copied.  ``llm-run --weights DIR`` reads the same directories and ``llm-run --export-hf DIR``
writes them (runtime/src/io/HfWeights.cpp).
"""

from __future__ import annotations

import json
import os
import shutil
from collections import OrderedDict
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import numpy as np

from .config import ModelConfig, config_from_dict
from .safetensors import BF16, _atomic_write, load_file, save_file
from .weights import normalize_params

__all__ = ["load_hf", "save_hf", "hf_saved_name", "TOKENIZER_FILES", "ARCHITECTURES"]

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
# What transformers' AutoTokenizer / GenerationConfig read from a model directory.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                   "merges.txt", "tokenizer.model", "generation_config.json")
ARCHITECTURES = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM"}
_TORCH_DTYPE = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}

PathLike = Union[str, os.PathLike]


def hf_saved_name(cfg: ModelConfig, name: str) -> str:
    """The name ``save_pretrained`` of the LM class gives bare parameter ``name`` (GPT2LMHeadModel keeps an untied
    ``lm_head`` outside its ``transformer`` module)."""
    return "transformer." + name if cfg.is_gpt2 and name != "lm_head.weight" else name


def _read_tensors(d: str) -> Dict[str, np.ndarray]:
    index = os.path.join(d, INDEX)
    if os.path.isfile(index):
        with open(index) as f:
            weight_map = json.load(f).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError(f"{index}: no \"weight_map\" object naming the shards")
        for name, shard in weight_map.items():
            if not isinstance(shard, str) or "/" in shard or shard.startswith(".") or not shard:
                raise ValueError(f"{index}: tensor '{name}' must name a file in the directory, not {shard!r}")
        out: Dict[str, np.ndarray] = {}
        for shard in sorted(set(weight_map.values())):
            tensors = load_file(os.path.join(d, shard))
            for name, file in weight_map.items():
                if file != shard:
                    continue
                if name not in tensors:
                    raise ValueError(f"{d}: the index places tensor '{name}' in {shard}, which does not hold it")
                out[name] = tensors[name]
        return out
    single = os.path.join(d, SINGLE)
    if os.path.isfile(single):
        return load_file(single)
    raise ValueError(f"{d} is a directory without Hugging Face weights: it has neither {SINGLE} nor {INDEX}")


def load_hf(path: PathLike) -> Tuple[ModelConfig, "OrderedDict[str, np.ndarray]"]:
    """(config, parameters) of a Hugging Face model directory; parameters in ``param_shapes`` order under the
    bare names, F32 and F16 as stored, BF16 as float32 (exact). Raises ValueError naming what is missing,
    unexpected or mis-shaped."""
    d = os.fspath(path)
    cfg_path = os.path.join(d, "config.json")
    if not os.path.isfile(cfg_path):
        raise ValueError(f"{d} is not a Hugging Face model directory: no config.json")
    with open(cfg_path) as f:
        cfg = config_from_dict(json.load(f), where=cfg_path)
    params = normalize_params(cfg, _read_tensors(d), where=d)
    return cfg, OrderedDict(params)


def _convert(t: Any, dtype: str) -> Any:
    x = np.asarray(t.to_float32() if isinstance(t, BF16) else t, dtype=np.float32)
    if dtype == "bf16":
        return BF16.from_float(x)
    return x.astype(np.float16) if dtype == "f16" else x


def _nbytes(t: Any) -> int:
    return int(np.prod(t.shape)) * (2 if isinstance(t, BF16) else t.dtype.itemsize)


def save_hf(path: PathLike, cfg: ModelConfig, params: Mapping[str, Any], dtype: str = "f32",
            tokenizer_from: Optional[PathLike] = None, max_shard_bytes: Optional[int] = None) -> str:
    """Writes a directory ``transformers.AutoModelForCausalLM.from_pretrained`` loads; returns its path.

    ``params`` are checked against ``cfg`` (``normalize_params``: bare names, a ``transformer.`` prefix is
    fine); ``dtype`` is f32, bf16 or f16; ``max_shard_bytes`` splits the weights into
    ``model-0000k-of-0000n.safetensors`` plus ``model.safetensors.index.json`` as ``save_pretrained`` does;
    ``tokenizer_from`` is a directory whose ``TOKENIZER_FILES`` are copied (it must not be ``path``)."""
    if dtype not in _TORCH_DTYPE:
        raise ValueError(f"save_hf: dtype must be f32, bf16 or f16, got {dtype!r}")
    if cfg.model_type not in ARCHITECTURES:
        raise ValueError(f"save_hf: model_type {cfg.model_type!r} has no Hugging Face class (gpt2 or llama)")
    out = os.fspath(path)
    if tokenizer_from is not None and os.path.exists(out) and os.path.samefile(out, tokenizer_from):
        raise ValueError(f"save_hf: {out} is the tokenizer_from directory; refusing to overwrite it")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"save_hf: {out} exists and is not a directory")
    tensors = OrderedDict((hf_saved_name(cfg, n), _convert(t, dtype))
                          for n, t in normalize_params(cfg, params, where="save_hf").items())
    os.makedirs(out, exist_ok=True)
    shards = [[]]
    size = 0
    for name, t in tensors.items():
        if max_shard_bytes and shards[-1] and size + _nbytes(t) > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += _nbytes(t)
    for stale in (SINGLE, INDEX):  # a previous export of another layout
        if os.path.exists(os.path.join(out, stale)):
            os.remove(os.path.join(out, stale))
    if len(shards) == 1:
        save_file(tensors, os.path.join(out, SINGLE), metadata={"format": "pt"})
    else:
        weight_map = {}
        for k, names in enumerate(shards, 1):
            file = f"model-{k:05d}-of-{len(shards):05d}.safetensors"
            save_file({n: tensors[n] for n in names}, os.path.join(out, file), metadata={"format": "pt"})
            weight_map.update((n, file) for n in names)
        index = {"metadata": {"total_size": sum(_nbytes(t) for t in tensors.values())}, "weight_map": weight_map}
        _atomic_write(os.path.join(out, INDEX), (json.dumps(index, indent=2) + "\n").encode())
    config = cfg.to_hf_dict()
    config.setdefault("architectures", [ARCHITECTURES[cfg.model_type]])
    config["torch_dtype"] = _TORCH_DTYPE[dtype]
    _atomic_write(os.path.join(out, "config.json"), (json.dumps(config, indent=2) + "\n").encode())
    if tokenizer_from is not None:
        for name in TOKENIZER_FILES:
            src = os.path.join(os.fspath(tokenizer_from), name)
            if os.path.isfile(src):
                shutil.copyfile(src, os.path.join(out, name))
    return out
