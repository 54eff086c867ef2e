#!/usr/bin/env python3
"""Fine-tune a Hugging Face GPT-2 or LLaMA directory on a text file and write the result as a Hugging Face directory.

    PYTHONPATH=python /usr/bin/python3 examples/python/finetune_hf.py --hf /tmp/gpl-run/hf \\
        --text README.md --out /tmp/ft --steps 40

The directory holds config.json, the weights (model.safetensors or shards + index; F32/BF16/F16) and
tokenizer.json (as ``save_pretrained`` plus ``tokenizer.save_pretrained`` write them, or as
examples/python/train_gpl_bpe.py exports them). The text is tokenized with that tokenizer
(``llmir.prepare_data``), the model compiled from config.json, trained from the directory's weights
(``llm-run --weights DIR``) with warm-up + cosine decay, and written to OUT/hf with ``--export-hf``
(config and tokenizer copied). Exits 1 unless the loss on the text fell.
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))

import llmir  # noqa: E402
from llmir.prepare_data import prepare  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hf", required=True, help="a Hugging Face model directory with tokenizer.json")
    ap.add_argument("--text", required=True, nargs="+", help="UTF-8 text files to fine-tune on")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=0, help="default: the model's positions")
    ap.add_argument("--lr", type=float, default=3e-4)
    args = ap.parse_args()

    data = os.path.join(args.out, "data")
    meta = prepare(args.text, data, tokenizer=os.path.join(args.hf, "tokenizer.json"), val_fraction=0)
    cfg = llmir.load_config(os.path.join(args.hf, "config.json"))
    seq = args.seq or cfg.max_position_embeddings
    print(f"{meta['train_tokens']} tokens; {llmir.num_params(cfg)} parameters, batch {args.batch} x {seq}")
    prog = llmir.compile(cfg, batch=args.batch, seq=seq, train=True)
    out = os.path.join(args.out, "hf")
    losses = []
    for s in prog.run(args.hf, os.path.join(data, "train_*.bin"), steps=args.steps, lr=args.lr,
                      lr_schedule="cosine", warmup_steps=max(1, args.steps // 10), export_hf=out):
        losses.append(s["loss"])
        if s["step"] % 10 == 0 or s["step"] == args.steps - 1:
            print(f"step {s['step'] + 1:4d}  loss {s['loss']:.3f}  lr {s['lr']:.2e}", flush=True)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    print(f"loss (mean of 5): {first:.3f} -> {last:.3f}; fine-tuned model: {out}")
    return 0 if last < first else 1


if __name__ == "__main__":
    sys.exit(main())
