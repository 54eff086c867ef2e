#!/usr/bin/env python3
"""Train a tiny character-level GPT on a real text with LLMIR, from Python.

The corpus is the GNU GPL v3 text that every Debian system ships
(/usr/share/common-licenses/GPL-3, ~35 KB); tokens are bytes (vocab 256).

    PYTHONPATH=python /usr/bin/python3 examples/python/train_tiny.py --steps 300 --dp 2 --tp 2

Prints the loss every few steps; at the end, the held-out loss before and after
training (a forward-only program on every 10th KiB of the text).
"""

import argparse
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))

import llmir  # noqa: E402
from llmir import safetensors  # noqa: E402
from llmir.weights import save_tokens  # noqa: E402

CORPUS = "/usr/share/common-licenses/GPL-3"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--dp", type=int, default=2)
    ap.add_argument("--tp", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--corpus", default=CORPUS)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()

    text = np.frombuffer(open(args.corpus, "rb").read(), dtype=np.uint8).astype(np.int32)
    # Held out: every 10th block of 1 KiB (the license's tail is in capitals,
    # so a plain 90/10 split would measure a different distribution).
    blocks = np.arange(len(text)) // 1024
    held = blocks % 10 == 9
    work = args.workdir or tempfile.mkdtemp(prefix="llmir-tiny-")
    os.makedirs(work, exist_ok=True)  # a new --workdir is created, not an error
    train_path, val_path = os.path.join(work, "train.npy"), os.path.join(work, "val.npy")
    save_tokens(text[~held], train_path)
    save_tokens(text[held], val_path)

    model = llmir.GPT2(n_layer=2, n_embd=128, n_head=4, vocab_size=256,
                       n_positions=args.seq)
    plan = llmir.Plan(dp=args.dp, tp=args.tp)
    weights = os.path.join(work, "init.safetensors")
    safetensors.save_file(llmir.random_weights(model, seed=0), weights)

    train = llmir.compile(model, plan, batch=args.batch, seq=args.seq, train=True,
                          workdir=os.path.join(work, "train"))
    evaluate = llmir.compile(model, plan, batch=args.batch, seq=args.seq,
                             workdir=os.path.join(work, "eval"))
    mem = train.memory()
    print(f"{llmir.num_params(model)} parameters, plan {plan.option()}, "
          f"{plan.ranks} ranks, arena {mem.get('arena_bytes', 0) / 2**20:.1f} MiB/rank")

    def val_loss(w):
        losses = [s["loss"] for s in evaluate.run(w, val_path, steps=4)]
        return float(np.mean(losses))

    before = val_loss(weights)
    ckpt = os.path.join(work, "ckpt")
    losses = []
    for s in train.run(weights, train_path, steps=args.steps, lr=args.lr,
                       weight_decay=0.1, save_checkpoint=ckpt):
        losses.append(s["loss"])
        if s["step"] % 50 == 0 or s["step"] == args.steps - 1:
            print(f"step {s['step']:4d}  loss {s['loss']:.4f}  {s['tokens_per_s']:.0f} tok/s")
    after = val_loss(os.path.join(ckpt, "checkpoint.safetensors"))
    print(f"held-out loss: {before:.4f} -> {after:.4f}")
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    print(f"train loss (mean of 5): {first:.4f} -> {last:.4f}")
    return 0 if last < first and after < before else 1


if __name__ == "__main__":
    sys.exit(main())
