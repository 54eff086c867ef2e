"""Dependency-free safetensors reader/writer on numpy.

File format (https://github.com/huggingface/safetensors):

    [u64 little-endian N][N bytes of UTF-8 JSON header][raw little-endian tensor data]

The header is a JSON object ``{name: {"dtype": D, "shape": [...], "data_offsets": [begin, end]}}`` plus an optional
``"__metadata__": {str: str}`` entry.  Offsets are relative to the start of the data section; the tensors must tile
the data section exactly (no gaps, no overlaps), like the reference implementation checks.

Writer: tensors are laid out in name order, packed back to back (no per-tensor alignment); the JSON header is
compact and padded with spaces to a multiple of 8 bytes (as the reference writer does, so the data section starts
8-byte aligned).  Files are written atomically (temporary file in the same directory + ``os.replace``).

BF16: numpy has no bfloat16.  ``load_file`` converts BF16 tensors to float32 (exact) by default, or returns the raw
bits as uint16 with ``bf16_as="uint16"``.  To write BF16, pass a :class:`BF16` wrapper (raw uint16 bits, or
``BF16.from_float(x)``: float32 values rounded to nearest even, like ``torch.Tensor.to(torch.bfloat16)``) or a
``torch.bfloat16`` tensor.  F16 is numpy's float16 both ways (``x.astype(np.float16)`` rounds to nearest even).
``llm-run`` loads F32, BF16 and F16 weights into any float program and ``--export-weights`` writes any of them.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import numpy as np

__all__ = [
    "BF16",
    "TensorInfo",
    "save_file",
    "save",
    "load_file",
    "load",
    "load_torch",
    "read_header",
    "read_metadata",
    "float32_to_bf16_bits",
    "bf16_bits_to_float32",
    "DTYPES",
    "MAX_HEADER_SIZE",
]

# safetensors dtype name -> little-endian numpy dtype.  BF16 is stored as uint16 bits.
DTYPES: Dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}

_NUMPY_TO_ST = {
    np.dtype("f8"): "F64",
    np.dtype("f4"): "F32",
    np.dtype("f2"): "F16",
    np.dtype("i8"): "I64",
    np.dtype("i4"): "I32",
    np.dtype("i2"): "I16",
    np.dtype("i1"): "I8",
    np.dtype("u8"): "U64",
    np.dtype("u4"): "U32",
    np.dtype("u2"): "U16",
    np.dtype("u1"): "U8",
    np.dtype("?"): "BOOL",
}

# Same limit as the reference implementation.
MAX_HEADER_SIZE = 100_000_000


def float32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """Round float32 values to bfloat16 (round to nearest, ties to even; NaN stays NaN). Returns uint16 bits."""
    a = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    bits = a.view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    out = rounded.astype(np.uint16)
    nan = np.isnan(a)
    if nan.any():
        out[nan] = ((bits[nan] >> 16) | 0x0040).astype(np.uint16)  # keep sign, force a quiet NaN
    return out.reshape(a.shape)


def bf16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """Exact conversion of bfloat16 bits (uint16) to float32."""
    b = np.ascontiguousarray(np.asarray(bits, dtype=np.uint16))
    return (b.astype(np.uint32) << 16).view(np.float32).reshape(b.shape)


@dataclass(frozen=True)
class BF16:
    """Marks a tensor to be stored as BF16.  ``bits`` are the raw uint16 bits."""

    bits: np.ndarray

    @staticmethod
    def from_float(x: np.ndarray) -> "BF16":
        return BF16(float32_to_bf16_bits(x))

    @property
    def shape(self) -> Tuple[int, ...]:
        return tuple(self.bits.shape)

    def to_float32(self) -> np.ndarray:
        return bf16_bits_to_float32(self.bits)


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: Tuple[int, ...]
    data_offsets: Tuple[int, int]


TensorLike = Union[np.ndarray, BF16, Any]  # Any: torch.Tensor (optional dependency)


def _to_st(value: Any, name: str) -> Tuple[str, Tuple[int, ...], bytes]:
    """Returns (safetensors dtype, shape, little-endian bytes) for one tensor."""
    if isinstance(value, BF16):
        bits = np.asarray(value.bits)
        if bits.dtype != np.uint16:
            raise TypeError(f"tensor '{name}': BF16 bits must be uint16, got {bits.dtype}")
        return "BF16", tuple(int(d) for d in bits.shape), np.ascontiguousarray(bits, dtype="<u2").tobytes()
    if type(value).__module__.startswith("torch"):
        import torch  # optional dependency, only when a torch tensor is passed

        t = value.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            bits = t.view(torch.int16).numpy().view(np.uint16)
            return "BF16", tuple(t.shape), np.ascontiguousarray(bits, dtype="<u2").tobytes()
        value = t.numpy()
    if not isinstance(value, np.ndarray):
        raise TypeError(f"tensor '{name}': expected numpy array, BF16 or torch tensor, got {type(value).__name__}")
    dt = value.dtype
    key = dt.newbyteorder("=") if dt.byteorder not in ("=", "|") else dt
    st = _NUMPY_TO_ST.get(np.dtype(key))
    if st is None:
        raise TypeError(f"tensor '{name}': dtype {dt} has no safetensors equivalent")
    data = np.ascontiguousarray(value, dtype=DTYPES[st]).tobytes()
    return st, tuple(int(d) for d in value.shape), data


def save(tensors: Mapping[str, TensorLike], metadata: Optional[Mapping[str, str]] = None) -> bytes:
    """Serializes tensors to safetensors bytes (tensors ordered by name)."""
    header: Dict[str, Any] = {}
    if metadata is not None:
        md = dict(metadata)
        for k, v in md.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(f"__metadata__ must map str to str, got {k!r}: {v!r}")
        header["__metadata__"] = md
    blobs = []
    offset = 0
    for name in sorted(tensors):
        if not isinstance(name, str) or not name:
            raise TypeError(f"tensor names must be non-empty strings, got {name!r}")
        if name == "__metadata__":
            raise ValueError("'__metadata__' is reserved and cannot be a tensor name")
        dtype, shape, data = _to_st(tensors[name], name)
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    hbytes = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    hbytes += b" " * ((8 - len(hbytes) % 8) % 8)
    return struct.pack("<Q", len(hbytes)) + hbytes + b"".join(blobs)


def save_file(
    tensors: Mapping[str, TensorLike],
    path: Union[str, os.PathLike],
    metadata: Optional[Mapping[str, str]] = None,
) -> None:
    """Writes tensors to ``path`` atomically (temporary file + os.replace)."""
    payload = save(tensors, metadata)
    _atomic_write(path, payload)


def _atomic_write(path: Union[str, os.PathLike], payload: bytes) -> None:
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path) + ".", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key '{k}' in header")
        out[k] = v
    return out


def _parse(buf: memoryview, where: str) -> Tuple[Dict[str, TensorInfo], Dict[str, str], int]:
    """Validates the header; returns (tensor infos, metadata, start of the data section)."""
    n = len(buf)
    if n < 8:
        raise ValueError(f"{where}: not a safetensors file: {n} bytes, need at least 8 for the header size")
    (hsize,) = struct.unpack("<Q", bytes(buf[:8]))
    if hsize > MAX_HEADER_SIZE:
        raise ValueError(f"{where}: header size {hsize} exceeds the limit of {MAX_HEADER_SIZE} bytes")
    if 8 + hsize > n:
        raise ValueError(f"{where}: header size {hsize} runs past the end of the file ({n} bytes; truncated?)")
    raw = bytes(buf[8 : 8 + hsize])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{where}: header is not valid UTF-8: {e}") from None
    if not text.startswith("{"):
        raise ValueError(f"{where}: header does not start with '{{' (not a safetensors file?)")
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicates)
    except ValueError as e:
        raise ValueError(f"{where}: header is not valid JSON: {e}") from None
    if not isinstance(header, dict):
        raise ValueError(f"{where}: header must be a JSON object")

    metadata: Dict[str, str] = {}
    if "__metadata__" in header:
        md = header.pop("__metadata__")
        if not isinstance(md, dict) or not all(isinstance(v, str) for v in md.values()):
            raise ValueError(f"{where}: __metadata__ must be an object mapping strings to strings")
        metadata = md

    data_len = n - 8 - hsize
    infos: Dict[str, TensorInfo] = {}
    for name, entry in header.items():
        ctx = f"{where}: tensor '{name}'"
        if not isinstance(entry, dict):
            raise ValueError(f"{ctx}: entry must be an object")
        extra = set(entry) - {"dtype", "shape", "data_offsets"}
        if extra:
            raise ValueError(f"{ctx}: unknown field(s) {sorted(extra)}")
        for field in ("dtype", "shape", "data_offsets"):
            if field not in entry:
                raise ValueError(f"{ctx}: missing field '{field}'")
        dtype = entry["dtype"]
        if dtype not in DTYPES:
            raise ValueError(f"{ctx}: unknown dtype {dtype!r}")
        shape = entry["shape"]
        if not isinstance(shape, list) or not all(_is_uint(d) for d in shape):
            raise ValueError(f"{ctx}: shape must be a list of non-negative integers, got {shape!r}")
        offs = entry["data_offsets"]
        if not isinstance(offs, list) or len(offs) != 2 or not all(_is_uint(o) for o in offs):
            raise ValueError(f"{ctx}: data_offsets must be [begin, end] non-negative integers, got {offs!r}")
        begin, end = offs
        if begin > end:
            raise ValueError(f"{ctx}: data_offsets begin {begin} > end {end}")
        if end > data_len:
            raise ValueError(f"{ctx}: data_offsets end {end} exceeds the data section ({data_len} bytes; truncated?)")
        numel = 1
        for d in shape:
            numel *= d
        expected = numel * DTYPES[dtype].itemsize
        if end - begin != expected:
            raise ValueError(
                f"{ctx}: {end - begin} bytes in data_offsets but shape {shape} of {dtype} needs {expected} bytes"
            )
        infos[name] = TensorInfo(dtype, tuple(shape), (begin, end))

    # The tensors must tile the data section exactly.
    pos = 0
    for name, info in sorted(infos.items(), key=lambda kv: kv[1].data_offsets):
        begin, end = info.data_offsets
        if begin != pos:
            kind = "overlaps the previous tensor" if begin < pos else f"leaves a gap of {begin - pos} bytes"
            raise ValueError(f"{where}: tensor '{name}' at offset {begin} {kind} (expected offset {pos})")
        pos = end
    if pos != data_len:
        raise ValueError(
            f"{where}: tensors cover {pos} bytes but the data section has {data_len} bytes "
            f"(trailing garbage or truncated file)"
        )
    return infos, metadata, 8 + hsize


def _is_uint(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _read_bytes(path: Union[str, os.PathLike]) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def read_header(path: Union[str, os.PathLike]) -> Tuple[Dict[str, TensorInfo], Dict[str, str]]:
    """Validates the file and returns ({name: TensorInfo}, metadata)."""
    infos, metadata, _ = _parse(memoryview(_read_bytes(path)), os.fspath(path))
    return infos, metadata


def read_metadata(path: Union[str, os.PathLike]) -> Dict[str, str]:
    return read_header(path)[1]


def load(data: bytes, *, bf16_as: str = "float32", where: str = "<bytes>") -> Dict[str, np.ndarray]:
    """Parses safetensors bytes.  BF16 tensors become float32 (``bf16_as="float32"``) or uint16 bits."""
    if bf16_as not in ("float32", "uint16"):
        raise ValueError(f"bf16_as must be 'float32' or 'uint16', got {bf16_as!r}")
    buf = memoryview(data)
    infos, _, start = _parse(buf, where)
    out: Dict[str, np.ndarray] = {}
    for name, info in infos.items():
        begin, end = info.data_offsets
        dt = DTYPES[info.dtype]
        arr = np.frombuffer(buf[start + begin : start + end], dtype=dt).reshape(info.shape)
        arr = arr.astype(dt.newbyteorder("="), copy=True)  # native byte order, writable, owns its memory
        if info.dtype == "BF16" and bf16_as == "float32":
            arr = bf16_bits_to_float32(arr)
        out[name] = arr
    return out


def load_file(path: Union[str, os.PathLike], *, bf16_as: str = "float32") -> Dict[str, np.ndarray]:
    """Reads and validates a safetensors file; raises ValueError on any inconsistency."""
    return load(_read_bytes(path), bf16_as=bf16_as, where=os.fspath(path))


def load_torch(path: Union[str, os.PathLike], *, dtype: Any = None) -> Dict[str, Any]:
    """Like load_file but returns torch tensors (BF16 stays torch.bfloat16 unless ``dtype`` converts)."""
    import torch

    infos, _ = read_header(path)
    arrays = load_file(path, bf16_as="uint16")
    out = {}
    for name, arr in arrays.items():
        if infos[name].dtype == "BF16":
            t = torch.from_numpy(arr.view(np.int16)).view(torch.bfloat16)
        elif infos[name].dtype in ("U16", "U32"):
            t = torch.from_numpy(arr.astype(np.int64))  # torch has no uint16/uint32: widen losslessly
        elif infos[name].dtype == "U64":
            raise ValueError(f"{os.fspath(path)}: tensor '{name}': U64 has no torch equivalent")
        else:
            t = torch.from_numpy(arr)
        out[name] = t.to(dtype) if dtype is not None else t
    return out
