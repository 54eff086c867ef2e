"""LLMIR Python package: safetensors I/O, HF config loading, deterministic inputs and the PyTorch numeric oracle.

``llmir.reference`` needs torch and is not imported here, so the rest works with numpy alone.
"""

from .config import ModelConfig, config_from_dict, load_config
from .weights import num_params, param_shapes, random_tokens, random_weights

__version__ = "0.1.0"

__all__ = [
    "ModelConfig",
    "config_from_dict",
    "load_config",
    "num_params",
    "param_shapes",
    "random_tokens",
    "random_weights",
    "__version__",
]
