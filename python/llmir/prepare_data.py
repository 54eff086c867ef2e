"""Text files -> llm.c token shards for ``llm-run --data``.

    python3 -m llmir.prepare_data --input a.txt [b.txt ...] \\
        (--tokenizer tokenizer.json | --train-bpe VOCAB | --bytes) \\
        --output DIR [--val-fraction 0.01] [--shard-tokens N]

Tokenizes the inputs (in order, as one stream), keeps the last
``--val-fraction`` of the tokens for validation, and writes
``DIR/train_NNNNNN.bin`` and ``DIR/val_NNNNNN.bin`` in llm.c's shard format:
a header of 256 little-endian int32 (magic 20240520, version 1, token count;
the rest 0) and uint16 tokens when the vocabulary has fewer than 65536 ids,
else magic 20240801, version 7 and uint32 tokens. Next to them: the tokenizer
(``tokenizer.json``; none for ``--bytes``) and ``meta.json`` (vocabulary
size, token counts, shard names). ``--bytes`` uses the UTF-8 bytes as ids
(vocabulary 256) and needs nothing; ``--tokenizer`` and ``--train-bpe``
(byte-level BPE trained on the inputs) need the ``tokenizers`` package.
"""

import argparse
import json
import os
import sys
from typing import List, Optional, Sequence, Tuple

import numpy as np

HEADER_INTS = 256
MAGIC_U16, VERSION_U16 = 20240520, 1
MAGIC_U32, VERSION_U32 = 20240801, 7


class PrepareError(Exception):
    pass


def write_shard(path: str, tokens: np.ndarray, vocab_size: int) -> None:
    """Writes ``tokens`` as an llm.c shard (uint16 when vocab_size < 65536), atomically."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 1 or tokens.dtype.kind not in "iu":
        raise PrepareError(f"{path}: tokens must be a 1-D integer array")
    if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab_size):
        raise PrepareError(f"{path}: token ids must be in [0, {vocab_size})")
    if tokens.size > 2**31 - 1:
        raise PrepareError(f"{path}: {tokens.size} tokens do not fit one shard's int32 count")
    small = vocab_size < 65536
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[:3] = (MAGIC_U16, VERSION_U16, tokens.size) if small else (MAGIC_U32, VERSION_U32, tokens.size)
    data = tokens.astype("<u2" if small else "<u4")
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(header.tobytes())
        f.write(data.tobytes())
    os.replace(tmp, path)


def read_shard(path: str) -> np.ndarray:
    """The tokens of an llm.c shard (memory-mapped), checking its header."""
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    if header.size < HEADER_INTS:
        raise PrepareError(f"{path}: shorter than the 1024-byte shard header")
    magic, version, count = (int(v) for v in header[:3])
    if (magic, version) == (MAGIC_U16, VERSION_U16):
        dtype = np.dtype("<u2")
    elif (magic, version) == (MAGIC_U32, VERSION_U32):
        dtype = np.dtype("<u4")
    else:
        raise PrepareError(f"{path}: not an llm.c shard (magic {magic}, version {version})")
    have = (os.path.getsize(path) - HEADER_INTS * 4) // dtype.itemsize
    if have != count:
        raise PrepareError(f"{path}: the header says {count} tokens but the file has {have}")
    return np.memmap(path, dtype=dtype, mode="r", offset=HEADER_INTS * 4, shape=(count,))


def _tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise PrepareError("--tokenizer and --train-bpe need the 'tokenizers' package "
                           "(pip install tokenizers); --bytes needs nothing") from None
    return tokenizers


def _read_texts(paths: Sequence[str]) -> List[str]:
    texts = []
    for p in paths:
        try:
            with open(p, encoding="utf-8") as f:
                texts.append(f.read())
        except (OSError, UnicodeDecodeError) as e:
            raise PrepareError(f"--input {p}: {e}") from None
    return texts


def tokenize(inputs: Sequence[str], tokenizer: Optional[str], train_bpe: Optional[int],
             use_bytes: bool) -> Tuple[np.ndarray, int, object]:
    """(tokens of all inputs in order, vocabulary size, the tokenizers.Tokenizer or None)."""
    texts = _read_texts(inputs)
    if use_bytes:
        ids = [np.frombuffer(t.encode("utf-8"), dtype=np.uint8) for t in texts]
        return np.concatenate(ids).astype(np.int64), 256, None
    tk = _tokenizers()
    if tokenizer:
        try:
            tok = tk.Tokenizer.from_file(tokenizer)
        except Exception as e:  # the library raises its own exception types
            raise PrepareError(f"--tokenizer {tokenizer}: {e}") from None
    else:
        if train_bpe < 257:
            raise PrepareError(f"--train-bpe {train_bpe}: the vocabulary needs more than the 256 bytes")
        tok = tk.Tokenizer(tk.models.BPE())
        tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = tk.decoders.ByteLevel()
        trainer = tk.trainers.BpeTrainer(vocab_size=train_bpe, show_progress=False,
                                         initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(texts, trainer=trainer)
    ids = [np.asarray(e.ids, dtype=np.int64) for e in tok.encode_batch(texts)]
    return np.concatenate(ids), tok.get_vocab_size(), tok


def prepare(inputs: Sequence[str], output: str, tokenizer: Optional[str] = None,
            train_bpe: Optional[int] = None, use_bytes: bool = False,
            val_fraction: float = 0.01, shard_tokens: int = 100_000_000) -> dict:
    """Writes the shards, the tokenizer and meta.json into ``output``; returns the meta."""
    if sum([tokenizer is not None, train_bpe is not None, use_bytes]) != 1:
        raise PrepareError("give exactly one of --tokenizer, --train-bpe, --bytes")
    if not 0 <= val_fraction < 1:
        raise PrepareError(f"--val-fraction {val_fraction}: expected a number in [0, 1)")
    if shard_tokens < 2:
        raise PrepareError(f"--shard-tokens {shard_tokens}: expected at least 2")
    tokens, vocab, tok = tokenize(inputs, tokenizer, train_bpe, use_bytes)
    n_val = int(round(len(tokens) * val_fraction))
    if val_fraction > 0:
        n_val = max(n_val, 2)
    if len(tokens) - n_val < 2:
        raise PrepareError(f"the inputs have {len(tokens)} tokens, too few to split "
                           f"(val {n_val}, train needs at least 2)")
    os.makedirs(output, exist_ok=True)
    meta = {"vocab_size": vocab, "dtype": "uint16" if vocab < 65536 else "uint32",
            "tokenizer": "bytes" if use_bytes else "tokenizer.json", "train": [], "val": []}
    for split, part in (("train", tokens[:len(tokens) - n_val]), ("val", tokens[len(tokens) - n_val:])):
        for i, start in enumerate(range(0, len(part), shard_tokens)):
            name = f"{split}_{i:06d}.bin"
            write_shard(os.path.join(output, name), part[start:start + shard_tokens], vocab)
            meta[split].append(name)
        meta[f"{split}_tokens"] = int(len(part))
    if tok is not None:
        tok.save(os.path.join(output, "tokenizer.json"))
    with open(os.path.join(output, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return meta


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m llmir.prepare_data", description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", nargs="+", required=True, help="UTF-8 text files, tokenized in order")
    how = ap.add_mutually_exclusive_group(required=True)
    how.add_argument("--tokenizer", help="a Hugging Face tokenizer.json")
    how.add_argument("--train-bpe", type=int, metavar="VOCAB", help="train a byte-level BPE of VOCAB ids")
    how.add_argument("--bytes", action="store_true", help="UTF-8 bytes as ids (vocabulary 256)")
    ap.add_argument("--output", required=True, help="directory for the shards")
    ap.add_argument("--val-fraction", type=float, default=0.01, help="share of tokens for val (default 0.01)")
    ap.add_argument("--shard-tokens", type=int, default=100_000_000, help="tokens per shard (default 1e8)")
    args = ap.parse_args(argv)
    try:
        meta = prepare(args.input, args.output, args.tokenizer, args.train_bpe, args.bytes,
                       args.val_fraction, args.shard_tokens)
    except PrepareError as e:
        print(f"prepare_data: error: {e}", file=sys.stderr)
        return 1
    print(f"{meta['train_tokens']} train / {meta['val_tokens']} val tokens, vocabulary "
          f"{meta['vocab_size']} ({meta['dtype']}), {len(meta['train'])} + {len(meta['val'])} "
          f"shards in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
