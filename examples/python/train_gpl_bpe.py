#!/usr/bin/env python3
"""Train a tiny GPT on the GPL-3 text end to end: BPE shards, schedule, clipping, eval, plot, HF export, generation.

    PYTHONPATH=python /usr/bin/python3 examples/python/train_gpl_bpe.py --out /tmp/gpl-run

1. ``llmir.prepare_data``: a byte-level BPE of 512 ids trained on the text (the ``tokenizers`` package),
   llm.c token shards ``train_000000.bin`` / ``val_000000.bin`` and ``tokenizer.json`` in OUT/data.
2. 300 training steps (``Program.run``, one rank): warm-up + cosine decay, gradient clipping at 1.0, held-out
   loss every 50 steps, the steps printed as they finish.
3. ``llmir.plot_log``: OUT/loss.png (train/eval loss and learning rate).
4. ``--export-hf``: OUT/hf, a directory ``transformers`` loads (model.safetensors, config.json, tokenizer.json).
5. Greedy generation from OUT/hf (an inference program reading the Hugging Face directory).

The corpus is /usr/share/common-licenses/GPL-3, which every Debian system ships. Exits 1 unless the held-out
loss fell.
"""

import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))

import llmir  # noqa: E402
from llmir.prepare_data import prepare  # noqa: E402

CORPUS = "/usr/share/common-licenses/GPL-3"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="directory for the data, the plot and the exported model")
    ap.add_argument("--corpus", default=CORPUS)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--prompt", default="The GNU General Public License")
    args = ap.parse_args()

    data = os.path.join(args.out, "data")
    meta = prepare([args.corpus], data, train_bpe=512, val_fraction=0.1)
    print(f"{meta['train_tokens']} train / {meta['val_tokens']} val tokens, vocabulary {meta['vocab_size']}")

    model = llmir.GPT2(n_layer=2, n_embd=128, n_head=4, vocab_size=meta["vocab_size"], n_positions=args.seq)
    # The model's config.json next to its tokenizer: --export-hf copies both into the exported directory.
    config = os.path.join(data, "config.json")
    with open(config, "w") as f:
        json.dump(model.to_hf_dict(), f, indent=2)
    train = llmir.compile(model, batch=args.batch, seq=args.seq, train=True, grad_norm=True)

    hf_dir = os.path.join(args.out, "hf")
    log = []
    for s in train.run(llmir.random_weights(model, seed=0), os.path.join(data, "train_*.bin"), steps=args.steps,
                       lr=args.lr, weight_decay=0.1, eval_data=os.path.join(data, "val_*.bin"),
                       lr_schedule="cosine", warmup_steps=args.steps // 10, min_lr=args.lr / 10,
                       clip_grad_norm=1.0, eval_every=50, eval_steps=4, export_hf=hf_dir, hf_config=config):
        log.append(s)
        if s.get("eval_loss") is not None:
            print(f"step {s['step'] + 1:4d}  loss {s['loss']:.3f}  eval {s['eval_loss']:.3f}  "
                  f"lr {s['lr']:.2e}  |g| {s['grad_norm']:.2f}", flush=True)
    png = llmir.plot_log(log, os.path.join(args.out, "loss.png"), title="tiny GPT on GPL-3 (BPE 512)")
    print(f"loss plot: {png}\nHugging Face directory: {hf_dir} ({', '.join(sorted(os.listdir(hf_dir)))})")

    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(hf_dir, "tokenizer.json"))
    prompt = tok.encode(args.prompt).ids
    gen = llmir.compile(model, batch=1, inference=True, max_seq=args.seq, prompt_len=len(prompt))
    ids = gen.generate(hf_dir, np.array([prompt]), max_new_tokens=24)
    print(f"greedy: {args.prompt}{tok.decode(ids[0].tolist())!r}")

    evals = [s["eval_loss"] for s in log if s.get("eval_loss") is not None]
    print(f"held-out loss: {evals[0]:.3f} (step 50) -> {evals[-1]:.3f} (step {args.steps})")
    return 0 if evals[-1] < evals[0] else 1


if __name__ == "__main__":
    sys.exit(main())
