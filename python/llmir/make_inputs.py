"""python -m llmir.make_inputs --config C.json [--weights W.safetensors] [--tokens T.npy --num-tokens N]
                               [--seed S] [--std 0.02] [--dtype f32|f16|bf16]

Writes deterministic random HF-layout weights (see weights.random_weights) and/or a 1-D int32 token array uniform in
[0, vocab_size) (see weights.random_tokens).  Errors print ``error: ...`` and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

import numpy as np

from . import safetensors as st
from .config import load_config
from .weights import random_tokens, random_weights, save_tokens


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m llmir.make_inputs", description=__doc__.split("\n\n")[1])
    p.add_argument("--config", required=True, help="HF config.json (gpt2 or llama)")
    p.add_argument("--weights", help="output safetensors file")
    p.add_argument("--tokens", help="output .npy token file (1-D int32)")
    p.add_argument("--num-tokens", type=int, help="number of tokens to write (required with --tokens)")
    p.add_argument("--seed", type=int, default=0, help="seed for numpy.random.default_rng (default 0)")
    p.add_argument("--std", type=float, default=0.02, help="std of the normal init of matrices (default 0.02)")
    p.add_argument("--dtype", choices=("f32", "f16", "bf16"), default="f32", help="weight dtype (default f32)")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if not args.weights and not args.tokens:
            raise ValueError("nothing to do: give --weights and/or --tokens")
        if args.tokens and args.num_tokens is None:
            raise ValueError("--tokens needs --num-tokens")
        if args.num_tokens is not None and args.num_tokens < 1:
            raise ValueError(f"--num-tokens must be >= 1, got {args.num_tokens}")
        if not (args.std >= 0.0 and np.isfinite(args.std)):
            raise ValueError(f"--std must be a finite non-negative number, got {args.std}")
        if args.seed < 0:
            raise ValueError(f"--seed must be >= 0, got {args.seed}")
        cfg = load_config(args.config)
        if args.weights:
            w = random_weights(cfg, seed=args.seed, std=args.std)
            if args.dtype == "f16":
                out = {k: v.astype(np.float16) for k, v in w.items()}
            elif args.dtype == "bf16":
                out = {k: st.BF16.from_float(v) for k, v in w.items()}
            else:
                out = w
            meta = {"format": "pt", "llmir.seed": str(args.seed), "llmir.std": repr(args.std),
                    "llmir.model_type": cfg.model_type}
            st.save_file(out, args.weights, metadata=meta)
        if args.tokens:
            save_tokens(random_tokens(cfg.vocab_size, args.num_tokens, seed=args.seed), args.tokens)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
