"""A lower-level model builder: custom transformer blocks written op by op in
Python, emitted as `tfm` dialect IR that the compiler takes like an imported
Hugging Face model.

    import llmir
    b = llmir.Builder(batch=2, seq=8)
    wte = b.param("wte.weight", [256, 64])
    x = b.embedding(b.input_ids, wte)
    x = x + b.embedding(b.position_ids(), b.param("wpe.weight", [8, 64]))
    for i in range(2):
        with b.layer(i):
            h = b.layer_norm(x, b.param(f"h.{i}.ln_1.weight", [64]), b.param(f"h.{i}.ln_1.bias", [64]))
            q, k, v = b.split(b.linear(h, b.param(f"h.{i}.attn.c_attn.weight", [64, 192])), 3)
            x = x + b.linear(b.attention(q, k, v, num_heads=4), b.param(f"h.{i}.attn.c_proj.weight", [64, 64]))
    logits = b.linear(x, wte, layout="out_in")
    model = b.build(b.cross_entropy(logits, b.labels))
    prog = llmir.compile(model, llmir.Plan(dp=2), train=True)

Parameters are function arguments named by their Hugging Face names (the
names the weights file and checkpoints use); `input_ids` and `labels` are i32
`[batch, seq]`. Shapes are checked in Python as each op is added: a mismatch
raises `ShapeError` naming the layer and the op, e.g. "layer 3: linear: input
features 64 do not match weight [128, 256] (layout in_out)". Ops inside
`with b.layer(i):` form the `tfm.layer i` region; the values it defines that
are used after it become the layer's results.

Every op here lowers to the runtime (`llm-opt --llm-lower-to-exec`). Training
(`train=True`) needs a VJP rule for every op; `matmul` and `softmax` have none
yet, so use them in forward-only models.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections import OrderedDict
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ["Builder", "BuiltModel", "ShapeError", "Tensor"]

Shape = Tuple[int, ...]

FLOAT_DTYPES = ("f32", "bf16", "f16")
ID_DTYPES = ("i32", "i64")


class ShapeError(ValueError):
    """An op's operand shapes do not fit (message: "layer i: op: what and why")."""


class Tensor:
    """A value of the model being built: its static shape and element type.

    `a + b` and `a * b` are `Builder.add` / `Builder.mul`."""

    __slots__ = ("builder", "id", "shape", "dtype", "layer")

    def __init__(self, builder: "Builder", id: int, shape: Shape, dtype: str, layer: Optional[int]):
        self.builder = builder
        self.id = id
        self.shape = shape
        self.dtype = dtype
        self.layer = layer  # the tfm.layer defining it (None: the function body)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __add__(self, other: "Tensor") -> "Tensor":
        return self.builder.add(self, other)

    def __mul__(self, other: "Tensor") -> "Tensor":
        return self.builder.mul(self, other)

    def __repr__(self) -> str:
        return f"Tensor({list(self.shape)}, {self.dtype})"


def _type(shape: Sequence[int], dtype: str) -> str:
    return "tensor<" + "".join(f"{d}x" for d in shape) + dtype + ">"


def _f64(x: float) -> str:
    """An MLIR f64 literal (the lexer needs a '.' in a float)."""
    s = repr(float(x))
    if "e" in s and "." not in s.split("e")[0]:
        m, e = s.split("e")
        s = f"{m}.0e{e}"
    elif "." not in s and "e" not in s:
        s += ".0"
    return f"{s} : f64"


class _Op:
    __slots__ = ("layer", "text", "operands", "results")

    def __init__(self, layer, text, operands, results):
        self.layer = layer  # layer index or None
        self.text = text  # "tfm.add {0}, {1} : tensor<...>", operands as {i}
        self.operands = operands
        self.results = results


class Builder:
    """Builds one `tfm` model function (`@forward`) op by op.

    `batch` and `seq` fix the input shapes; `dtype` is the default parameter
    element type. `model_type` and extra keyword attributes go into the
    module's `tfm.model` attribute (with batch, seq, vocab_size, num_layers),
    which the program file records."""

    def __init__(self, batch: int, seq: int, *, dtype: str = "f32", model_type: str = "custom",
                 **attrs: Union[int, float, str, bool]):
        for name, v in (("batch", batch), ("seq", seq)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"Builder: {name} must be a positive integer, got {v!r}")
        if dtype not in FLOAT_DTYPES:
            raise ValueError(f"Builder: dtype must be one of {', '.join(FLOAT_DTYPES)}, got {dtype!r}")
        for key in attrs:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_$.]*$", key):
                raise ValueError(f"Builder: attribute name {key!r} is not an identifier")
        self.batch, self.seq, self.dtype = batch, seq, dtype
        self.model_type = model_type
        self.attrs = dict(attrs)
        self._next_id = 0
        self._inputs: Dict[str, Tensor] = {}
        self._params: "OrderedDict[str, Tensor]" = OrderedDict()
        self._param_kind: Dict[str, str] = {}
        self._ops: List[_Op] = []
        self._layer: Optional[int] = None
        self._layers_seen: List[int] = []
        self._losses: List[Tensor] = []
        self._vocab = 0
        self._weights_by_layer: Dict[Optional[int], int] = {}  # matmul weights (cost model)
        self._attention_by_layer: Dict[Optional[int], int] = {}

    # --- values --------------------------------------------------------------------------------

    def _new(self, shape: Sequence[int], dtype: str) -> Tensor:
        t = Tensor(self, self._next_id, tuple(int(d) for d in shape), dtype, self._layer)
        self._next_id += 1
        return t

    def _where(self, op: str) -> str:
        return f"layer {self._layer}: {op}" if self._layer is not None else op

    def _fail(self, op: str, msg: str) -> ShapeError:
        return ShapeError(f"{self._where(op)}: {msg}")

    def _check(self, op: str, **tensors: Tensor) -> None:
        for name, t in tensors.items():
            if not isinstance(t, Tensor):
                raise TypeError(f"{self._where(op)}: {name} must be a Tensor of this builder, "
                                f"got {type(t).__name__}")
            if t.builder is not self:
                raise ValueError(f"{self._where(op)}: {name} belongs to another Builder")

    def _float(self, op: str, name: str, t: Tensor) -> None:
        if t.dtype not in FLOAT_DTYPES:
            raise self._fail(op, f"{name} must be a float tensor, got {t.dtype}")

    def _same_dtype(self, op: str, ref: Tensor, **others: Optional[Tensor]) -> None:
        for name, t in others.items():
            if t is not None and t.dtype != ref.dtype:
                raise self._fail(op, f"{name} has element type {t.dtype}, expected {ref.dtype}")

    def _vector(self, op: str, name: str, t: Optional[Tensor], size: int, meaning: str) -> None:
        if t is not None and t.shape != (size,):
            raise self._fail(op, f"{name} {list(t.shape)} does not match {meaning} {size}")

    def _emit(self, text: str, operands: Sequence[Tensor], results: Sequence[Tensor]) -> None:
        self._ops.append(_Op(self._layer, text, list(operands), list(results)))

    @property
    def input_ids(self) -> Tensor:
        """Token ids, i32 [batch, seq] (the `input_ids` input)."""
        return self.input("input_ids")

    @property
    def labels(self) -> Tensor:
        """Target ids, i32 [batch, seq] (the `labels` input)."""
        return self.input("labels")

    def input(self, name: str) -> Tensor:
        """A model input: "input_ids" or "labels" (i32 [batch, seq]); the same tensor on every call."""
        if name not in ("input_ids", "labels"):
            raise ValueError(f"input: the runtime binds 'input_ids' and 'labels', got {name!r}")
        if name not in self._inputs:
            t = self._new((self.batch, self.seq), "i32")
            t.layer = None
            self._inputs[name] = t
        return self._inputs[name]

    def param(self, name: str, shape: Sequence[int], dtype: Optional[str] = None) -> Tensor:
        """A parameter named by its Hugging Face name. Asking again for the same name and
        shape returns the same tensor (tied weights); another shape is a ShapeError."""
        if not isinstance(name, str) or not name or any(c in name for c in '"\\ \n'):
            raise ValueError(f"param: name must be a non-empty string without spaces or quotes, got {name!r}")
        shape = tuple(shape)
        if not shape or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1
                            for d in shape):
            raise ShapeError(f"{self._where('param')}: '{name}' needs a shape of positive integers, "
                             f"got {list(shape)}")
        dtype = dtype or self.dtype
        if dtype not in FLOAT_DTYPES:
            raise ValueError(f"param: '{name}': dtype must be one of {', '.join(FLOAT_DTYPES)}, got {dtype!r}")
        if name in self._params:
            old = self._params[name]
            if old.shape != tuple(int(d) for d in shape) or old.dtype != dtype:
                raise ShapeError(f"{self._where('param')}: '{name}' was declared {list(old.shape)} {old.dtype}, "
                                 f"now {list(shape)} {dtype}")
            return old
        t = self._new(shape, dtype)
        t.layer = None  # function arguments are visible everywhere
        self._params[name] = t
        self._param_kind.setdefault(name, "matrix")
        return t

    def _mark(self, t: Optional[Tensor], kind: str) -> None:
        for name, p in self._params.items():
            if p is t and self._param_kind.get(name) == "matrix" and t.ndim == 1:
                self._param_kind[name] = kind

    # --- layers --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def layer(self, index: int) -> Iterator[None]:
        """Ops added inside form `tfm.layer index` (layers may not nest; each index once)."""
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValueError(f"layer: index must be a non-negative integer, got {index!r}")
        if self._layer is not None:
            raise ValueError(f"layer {index}: layers may not nest (inside layer {self._layer})")
        if index in self._layers_seen:
            raise ValueError(f"layer {index}: this layer was already built")
        self._layers_seen.append(index)
        self._layer = index
        try:
            yield
        finally:
            self._layer = None

    # --- ops -----------------------------------------------------------------------------------

    def embedding(self, ids: Tensor, table: Tensor) -> Tensor:
        """Rows of `table` [num, dim] for each id: ids.shape + [dim]."""
        self._check("embedding", ids=ids, table=table)
        if ids.dtype not in ID_DTYPES:
            raise self._fail("embedding", f"ids must be an integer tensor, got {ids.dtype}")
        self._float("embedding", "table", table)
        if table.ndim != 2:
            raise self._fail("embedding", f"table must be [num_embeddings, dim], got {list(table.shape)}")
        if ids is self._inputs.get("input_ids"):
            self._vocab = self._vocab or table.shape[0]
        r = self._new(ids.shape + (table.shape[1],), table.dtype)
        self._emit(f"tfm.embedding {{0}}, {{1}} : ({_type(ids.shape, ids.dtype)}, "
                   f"{_type(table.shape, table.dtype)}) -> {_type(r.shape, r.dtype)}", [ids, table], [r])
        return r

    def position_ids(self, offset: int = 0) -> Tensor:
        """Positions offset .. offset+seq-1 of every row, i32 [batch, seq]."""
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError(f"{self._where('position_ids')}: offset must be a non-negative integer, got {offset!r}")
        r = self._new((self.batch, self.seq), "i32")
        attr = f" {{{{offset = {offset} : i64}}}}" if offset else ""
        self._emit(f"tfm.position_ids{attr} : {_type(r.shape, r.dtype)}", [], [r])
        return r

    def linear(self, x: Tensor, w: Tensor, bias: Optional[Tensor] = None, layout: str = "in_out") -> Tensor:
        """x @ W + bias over the last dim; W is [in, out] (layout "in_out", GPT-2 Conv1D)
        or [out, in] ("out_in", torch.nn.Linear)."""
        self._check("linear", x=x, weight=w)
        if bias is not None:
            self._check("linear", bias=bias)
        if layout not in ("in_out", "out_in"):
            raise ValueError(f"{self._where('linear')}: layout must be 'in_out' or 'out_in', got {layout!r}")
        self._float("linear", "input", x)
        if x.ndim < 1:
            raise self._fail("linear", "input must have rank >= 1, got a scalar")
        if w.ndim != 2:
            raise self._fail("linear", f"weight must be 2-D, got {list(w.shape)}")
        fin, fout = (w.shape[0], w.shape[1]) if layout == "in_out" else (w.shape[1], w.shape[0])
        if x.shape[-1] != fin:
            raise self._fail("linear", f"input features {x.shape[-1]} do not match weight {list(w.shape)} "
                                       f"(layout {layout})")
        self._same_dtype("linear", x, weight=w, bias=bias)
        self._vector("linear", "bias", bias, fout, "the out features")
        self._mark(bias, "bias")
        self._weights_by_layer[self._layer] = self._weights_by_layer.get(self._layer, 0) + fin * fout
        r = self._new(x.shape[:-1] + (fout,), x.dtype)
        ops = [x, w] + ([bias] if bias is not None else [])
        b = " bias {2}" if bias is not None else ""
        types = ", ".join(_type(t.shape, t.dtype) for t in ops)
        self._emit(f"tfm.linear {{0}}, {{1}}{b} layout {layout} : ({types}) -> {_type(r.shape, r.dtype)}",
                   ops, [r])
        return r

    def matmul(self, a: Tensor, b: Tensor, transpose_a: bool = False, transpose_b: bool = False) -> Tensor:
        """Batched [..., M, K] x [..., K, N] -> [..., M, N] (forward only: no VJP yet)."""
        self._check("matmul", lhs=a, rhs=b)
        self._float("matmul", "lhs", a)
        self._same_dtype("matmul", a, rhs=b)
        if a.ndim < 2 or b.ndim < 2 or a.ndim != b.ndim:
            raise self._fail("matmul", f"operands must have equal rank >= 2, got {list(a.shape)} and {list(b.shape)}")
        if a.shape[:-2] != b.shape[:-2]:
            raise self._fail("matmul", f"batch dimensions {list(a.shape[:-2])} and {list(b.shape[:-2])} differ")
        m, ka = (a.shape[-1], a.shape[-2]) if transpose_a else (a.shape[-2], a.shape[-1])
        kb, n = (b.shape[-1], b.shape[-2]) if transpose_b else (b.shape[-2], b.shape[-1])
        if ka != kb:
            raise self._fail("matmul", f"contraction dimensions {ka} (lhs {list(a.shape)}) and {kb} "
                                       f"(rhs {list(b.shape)}) do not match")
        r = self._new(a.shape[:-2] + (m, n), a.dtype)
        flags = [f for f, on in (("transpose_a", transpose_a), ("transpose_b", transpose_b)) if on]
        attr = f" {{{{{', '.join(flags)}}}}}" if flags else ""
        self._emit(f"tfm.matmul {{0}}, {{1}}{attr} : ({_type(a.shape, a.dtype)}, {_type(b.shape, b.dtype)}) -> "
                   f"{_type(r.shape, r.dtype)}", [a, b], [r])
        return r

    def _norm(self, op: str, x: Tensor, gamma: Tensor, beta: Optional[Tensor], eps: float) -> Tensor:
        self._check(op, input=x, gamma=gamma)
        if beta is not None:
            self._check(op, beta=beta)
        self._float(op, "input", x)
        if x.ndim < 1:
            raise self._fail(op, "input must have rank >= 1, got a scalar")
        self._vector(op, "gamma", gamma, x.shape[-1], "the input's last dimension")
        self._vector(op, "beta", beta, x.shape[-1], "the input's last dimension")
        self._same_dtype(op, x, gamma=gamma, beta=beta)
        if not (eps > 0 and math.isfinite(eps)):
            raise ValueError(f"{self._where(op)}: eps must be positive and finite, got {eps!r}")
        self._mark(gamma, "norm")
        self._mark(beta, "bias")
        r = self._new(x.shape, x.dtype)
        ops = [x, gamma] + ([beta] if beta is not None else [])
        names = ", ".join(f"{{{i}}}" for i in range(len(ops)))
        types = ", ".join(_type(t.shape, t.dtype) for t in ops)
        self._emit(f"tfm.{op} {names} {{{{epsilon = {_f64(eps)}}}}} : ({types}) -> {_type(r.shape, r.dtype)}",
                   ops, [r])
        return r

    def layer_norm(self, x: Tensor, gamma: Tensor, beta: Optional[Tensor] = None, eps: float = 1e-5) -> Tensor:
        """LayerNorm over the last dim (torch.nn.LayerNorm; beta optional)."""
        return self._norm("layer_norm", x, gamma, beta, eps)

    def rms_norm(self, x: Tensor, gamma: Tensor, eps: float = 1e-6) -> Tensor:
        """RMSNorm over the last dim (LLaMA)."""
        return self._norm("rms_norm", x, gamma, None, eps)

    def _unary(self, op: str, x: Tensor, text: str) -> Tensor:
        self._check(op, input=x)
        self._float(op, "input", x)
        r = self._new(x.shape, x.dtype)
        self._emit(text + f" : {_type(r.shape, r.dtype)}", [x], [r])
        return r

    def gelu(self, x: Tensor, approximate: str = "tanh") -> Tensor:
        """GELU: "tanh" (GPT-2's gelu_new) or "none" (exact erf)."""
        if approximate not in ("tanh", "none"):
            raise ValueError(f"{self._where('gelu')}: approximate must be 'tanh' or 'none', got {approximate!r}")
        return self._unary("gelu", x, f"tfm.gelu {approximate} {{0}}")

    def silu(self, x: Tensor) -> Tensor:
        """x * sigmoid(x)."""
        return self._unary("silu", x, "tfm.silu {0}")

    def scale(self, x: Tensor, factor: float) -> Tensor:
        """x * factor (a constant)."""
        if not math.isfinite(factor):
            raise ValueError(f"{self._where('scale')}: factor must be finite, got {factor!r}")
        return self._unary("scale", x, f"tfm.scale {{0}} {{{{factor = {_f64(factor)}}}}}")

    def softmax(self, x: Tensor, axis: int = -1) -> Tensor:
        """Softmax along `axis` (forward only: no VJP yet)."""
        if x.ndim < 1 or not -x.ndim <= axis < x.ndim:
            raise self._fail("softmax", f"axis {axis} is out of range for shape {list(x.shape)}")
        return self._unary("softmax", x, f"tfm.softmax {{0}} {{{{axis = {axis} : i64}}}}")

    def _binary(self, op: str, a: Tensor, b: Tensor) -> Tensor:
        self._check(op, lhs=a, rhs=b)
        self._float(op, "lhs", a)
        if a.shape != b.shape or a.dtype != b.dtype:
            raise self._fail(op, f"operands {_type(a.shape, a.dtype)} and {_type(b.shape, b.dtype)} differ "
                                 f"(no implicit broadcast)")
        r = self._new(a.shape, a.dtype)
        self._emit(f"tfm.{op} {{0}}, {{1}} : {_type(r.shape, r.dtype)}", [a, b], [r])
        return r

    def add(self, a: Tensor, b: Tensor) -> Tensor:
        """Element-wise sum of same-shaped tensors."""
        return self._binary("add", a, b)

    def mul(self, a: Tensor, b: Tensor) -> Tensor:
        """Element-wise product of same-shaped tensors."""
        return self._binary("mul", a, b)

    def attention(self, q: Tensor, k: Tensor, v: Tensor, num_heads: int, num_kv_heads: Optional[int] = None,
                  causal: bool = True, scale: Optional[float] = None) -> Tensor:
        """Scaled dot-product attention on [batch, seq, heads * head_dim] (MHA, GQA, MQA);
        scores scaled by `scale` (default 1/sqrt(head_dim))."""
        self._check("attention", query=q, key=k, value=v)
        self._float("attention", "query", q)
        kv = num_heads if num_kv_heads is None else num_kv_heads
        for name, n in (("num_heads", num_heads), ("num_kv_heads", kv)):
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"{self._where('attention')}: {name} must be a positive integer, got {n!r}")
        if q.ndim != 3 or k.ndim != 3 or v.ndim != 3:
            raise self._fail("attention", f"query, key and value must be [batch, seq, heads * head_dim], got "
                                          f"{list(q.shape)}, {list(k.shape)} and {list(v.shape)}")
        if q.shape[2] % num_heads:
            raise self._fail("attention", f"num_heads {num_heads} does not divide the query hidden size {q.shape[2]}")
        if num_heads % kv:
            raise self._fail("attention", f"num_kv_heads {kv} does not divide num_heads {num_heads}")
        head_dim = q.shape[2] // num_heads
        want = (q.shape[0], q.shape[1], kv * head_dim)
        if k.shape != want:
            raise self._fail("attention", f"key {list(k.shape)} does not match [batch, seq, num_kv_heads * head_dim] "
                                          f"= {list(want)}")
        if v.shape != k.shape:
            raise self._fail("attention", f"value {list(v.shape)} does not match key {list(k.shape)}")
        self._same_dtype("attention", q, key=k, value=v)
        attrs = [f"num_heads = {num_heads} : i64", f"num_kv_heads = {kv} : i64"]
        if causal:
            attrs.insert(0, "causal")
        if scale is not None:
            if not (scale > 0 and math.isfinite(scale)):
                raise ValueError(f"{self._where('attention')}: scale must be positive and finite, got {scale!r}")
            attrs.append(f"scale = {_f64(scale)}")
        self._attention_by_layer[self._layer] = self._attention_by_layer.get(self._layer, 0) + q.shape[1] * q.shape[2]
        r = self._new(q.shape, q.dtype)
        types = ", ".join(_type(t.shape, t.dtype) for t in (q, k, v))
        self._emit(f"tfm.attention {{0}}, {{1}}, {{2}} {{{{{', '.join(attrs)}}}}} : ({types}) -> "
                   f"{_type(r.shape, r.dtype)}", [q, k, v], [r])
        return r

    def rope(self, x: Tensor, num_heads: int, theta: float = 10000.0, offset: int = 0) -> Tensor:
        """Rotary position embedding of [batch, seq, heads * head_dim] (HF rotate-half)."""
        self._check("rope", input=x)
        self._float("rope", "input", x)
        if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
            raise ValueError(f"{self._where('rope')}: num_heads must be a positive integer, got {num_heads!r}")
        if x.ndim != 3:
            raise self._fail("rope", f"input must be [batch, seq, heads * head_dim], got {list(x.shape)}")
        if x.shape[2] % num_heads or (x.shape[2] // num_heads) % 2:
            raise self._fail("rope", f"hidden size {x.shape[2]} must be num_heads {num_heads} x an even head_dim")
        if not (theta > 0 and math.isfinite(theta)):
            raise ValueError(f"{self._where('rope')}: theta must be positive and finite, got {theta!r}")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError(f"{self._where('rope')}: offset must be a non-negative integer, got {offset!r}")
        attrs = [f"num_heads = {num_heads} : i64", f"theta = {_f64(theta)}"]
        if offset:
            attrs.append(f"offset = {offset} : i64")
        return self._unary("rope", x, f"tfm.rope {{0}} {{{{{', '.join(attrs)}}}}}")

    def cross_entropy(self, logits: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
        """Softmax cross-entropy of logits [..., vocab] against labels [...]: a scalar loss."""
        self._check("cross_entropy", logits=logits, labels=labels)
        self._float("cross_entropy", "logits", logits)
        if labels.dtype not in ID_DTYPES:
            raise self._fail("cross_entropy", f"labels must be an integer tensor, got {labels.dtype}")
        if reduction not in ("mean", "sum"):
            raise ValueError(f"{self._where('cross_entropy')}: reduction must be 'mean' or 'sum', got {reduction!r}")
        if logits.ndim < 2 or labels.shape != logits.shape[:-1]:
            raise self._fail("cross_entropy", f"labels {list(labels.shape)} do not match logits {list(logits.shape)} "
                                              f"without the vocab dim")
        self._vocab = logits.shape[-1]
        r = self._new((), logits.dtype)
        red = " reduction sum" if reduction == "sum" else ""
        self._emit(f"tfm.cross_entropy {{0}}, {{1}}{red} : ({_type(logits.shape, logits.dtype)}, "
                   f"{_type(labels.shape, labels.dtype)}) -> {_type(r.shape, r.dtype)}", [logits, labels], [r])
        self._losses.append(r)
        return r

    def split(self, x: Tensor, sizes: Union[int, Sequence[int]], axis: int = -1) -> Tuple[Tensor, ...]:
        """Consecutive pieces along `axis`: `sizes` is a count of equal pieces or the list of sizes."""
        self._check("split", input=x)
        if x.ndim < 1:
            raise self._fail("split", "input must have rank >= 1, got a scalar")
        ax = axis + x.ndim if axis < 0 else axis
        if not 0 <= ax < x.ndim:
            raise self._fail("split", f"axis {axis} is out of range for shape {list(x.shape)}")
        if isinstance(sizes, int):
            if sizes < 1 or x.shape[ax] % sizes:
                raise self._fail("split", f"{sizes} equal pieces do not divide dimension {ax} of {list(x.shape)}")
            sizes = [x.shape[ax] // sizes] * sizes
        sizes = [int(s) for s in sizes]
        if not sizes or any(s < 1 for s in sizes) or sum(sizes) != x.shape[ax]:
            raise self._fail("split", f"sizes {sizes} do not add up to dimension {ax} of {list(x.shape)}")
        outs = []
        for s in sizes:
            shape = list(x.shape)
            shape[ax] = s
            outs.append(self._new(shape, x.dtype))
        types = ", ".join(_type(t.shape, t.dtype) for t in outs)
        self._emit(f"tfm.split {{0}} {{{{axis = {ax} : i64}}}} : {_type(x.shape, x.dtype)} -> {types}", [x], outs)
        return tuple(outs)

    def reshape(self, x: Tensor, shape: Sequence[int]) -> Tensor:
        """The same elements viewed with another static shape (one dim may be -1)."""
        self._check("reshape", input=x)
        shape = [int(d) for d in shape]
        total = int(np.prod(x.shape, dtype=np.int64))
        if shape.count(-1) == 1:
            known = int(np.prod([d for d in shape if d != -1], dtype=np.int64))
            if known > 0 and total % known == 0:
                shape[shape.index(-1)] = total // known
        if any(d < 1 for d in shape) or int(np.prod(shape, dtype=np.int64)) != total:
            raise self._fail("reshape", f"cannot view {list(x.shape)} ({total} elements) as {shape}")
        r = self._new(shape, x.dtype)
        self._emit(f"tfm.reshape {{0}} : {_type(x.shape, x.dtype)} -> {_type(r.shape, r.dtype)}", [x], [r])
        return r

    def transpose(self, x: Tensor, permutation: Sequence[int]) -> Tensor:
        """result.shape[i] = x.shape[permutation[i]]."""
        self._check("transpose", input=x)
        perm = [int(p) for p in permutation]
        if sorted(perm) != list(range(x.ndim)):
            raise self._fail("transpose", f"{perm} is not a permutation of the {x.ndim} dims of {list(x.shape)}")
        r = self._new([x.shape[p] for p in perm], x.dtype)
        self._emit(f"tfm.transpose {{0}} [{', '.join(map(str, perm))}] : {_type(x.shape, x.dtype)} -> "
                   f"{_type(r.shape, r.dtype)}", [x], [r])
        return r

    def cast(self, x: Tensor, dtype: str) -> Tensor:
        """Element type conversion between f32, bf16 and f16."""
        self._check("cast", input=x)
        self._float("cast", "input", x)
        if dtype not in FLOAT_DTYPES:
            raise ValueError(f"{self._where('cast')}: dtype must be one of {', '.join(FLOAT_DTYPES)}, got {dtype!r}")
        r = self._new(x.shape, dtype)
        self._emit(f"tfm.cast {{0}} : {_type(x.shape, x.dtype)} -> {_type(r.shape, r.dtype)}", [x], [r])
        return r

    # --- output --------------------------------------------------------------------------------

    def build(self, *outputs: Tensor) -> "BuiltModel":
        """The model returning `outputs` (default: the last cross_entropy loss).

        Raises ValueError for a layer still open, no output, or a parameter the
        outputs do not use."""
        if self._layer is not None:
            raise ValueError(f"build: layer {self._layer} is still open")
        if not outputs:
            if not self._losses:
                raise ValueError("build: no output given and no cross_entropy loss built")
            outputs = (self._losses[-1],)
        for o in outputs:
            self._check("build", output=o)
        text, used = self._emit_module(list(outputs))
        unused = [n for n, p in self._params.items() if p.id not in used]
        if unused:
            raise ValueError(f"build: parameter(s) {', '.join(unused)} are not used by the outputs")
        params = OrderedDict((n, p.shape) for n, p in self._params.items())
        dtypes = {n: p.dtype for n, p in self._params.items()}
        return BuiltModel(text, self.batch, self.seq, params, dtypes, dict(self._param_kind), self._model_attrs(),
                          self._layer_costs())

    def _model_attrs(self) -> Dict[str, Union[int, float, str, bool]]:
        attrs: Dict[str, Union[int, float, str, bool]] = dict(self.attrs)
        attrs.update(batch=self.batch, seq=self.seq, vocab_size=self._vocab, model_type=self.model_type,
                     num_layers=len(self._layers_seen))
        return attrs

    def _layer_costs(self) -> Dict[str, object]:
        """Relative forward cost per token (matmul weights + 2 x seq x attention width,
        as --tfm-model-stats counts FLOPs) of each layer and of what runs outside layers."""
        layers = [self._weights_by_layer.get(i, 0) + 2 * self._attention_by_layer.get(i, 0)
                  for i in self._layers_seen]
        outside = self._weights_by_layer.get(None, 0) + 2 * self._attention_by_layer.get(None, 0)
        return {"layers": layers, "head": outside, "embedding": 0}

    def _emit_module(self, outputs: List[Tensor]) -> Tuple[str, set]:
        # Live ops: those the outputs depend on.
        producer: Dict[int, _Op] = {}
        for op in self._ops:
            for r in op.results:
                producer[r.id] = op
        live_ops = set()
        used_ids = set()
        stack = [o.id for o in outputs]
        while stack:
            vid = stack.pop()
            if vid in used_ids:
                continue
            used_ids.add(vid)
            op = producer.get(vid)
            if op is not None and id(op) not in live_ops:
                live_ops.add(id(op))
                stack.extend(t.id for t in op.operands)
        ops = [op for op in self._ops if id(op) in live_ops]

        # Values defined in a layer and used after it become its results.
        escaping: Dict[int, List[Tensor]] = {}
        defined_in: Dict[int, Optional[int]] = {}
        for op in ops:
            for r in op.results:
                defined_in[r.id] = op.layer
        seen_escape = set()

        def escape(t: Tensor) -> None:
            if t.id not in seen_escape:
                seen_escape.add(t.id)
                escaping.setdefault(defined_in[t.id], []).append(t)

        for op in ops:
            for t in op.operands:
                layer = defined_in.get(t.id)
                if layer is not None and layer != op.layer:
                    escape(t)
        for o in outputs:
            if defined_in.get(o.id) is not None:
                escape(o)
        for lst in escaping.values():
            lst.sort(key=lambda t: t.id)

        inputs = [(n, self._inputs[n]) for n in ("input_ids", "labels")
                  if n in self._inputs and self._inputs[n].id in used_ids]
        params = [(n, p) for n, p in self._params.items() if p.id in used_ids]
        names: Dict[int, str] = {}
        args = []
        for i, (n, t) in enumerate(inputs + params):
            names[t.id] = f"%arg{i}"
            kind = "tfm.input" if i < len(inputs) else "tfm.param"
            args.append(f"%arg{i}: {_type(t.shape, t.dtype)} {{{kind} = \"{n}\"}}")

        counter = [0]

        def fresh() -> str:
            counter[0] += 1
            return f"%{counter[0] - 1}"

        def render(op: _Op, indent: str) -> str:
            res = [fresh() for _ in op.results] if len(op.results) == 1 else None
            if res is None:
                base = fresh()
                res = [f"{base}#{i}" for i in range(len(op.results))]
                lhs = f"{base}:{len(op.results)}"
            else:
                lhs = res[0]
            for r, n in zip(op.results, res):
                names[r.id] = n
            return f"{indent}{lhs} = " + op.text.format(*[names[t.id] for t in op.operands])

        lines: List[str] = []
        i = 0
        while i < len(ops):
            op = ops[i]
            if op.layer is None:
                lines.append(render(op, "    "))
                i += 1
                continue
            index = op.layer
            body = []
            while i < len(ops) and ops[i].layer == index:
                body.append(ops[i])
                i += 1
            results = escaping.get(index, [])
            head = fresh()
            types = ", ".join(_type(t.shape, t.dtype) for t in results)
            if not results:
                lhs = ""
            elif len(results) == 1:
                lhs = f"{head} = "
            else:
                lhs = f"{head}:{len(results)} = "
            lines.append(f"    {lhs}tfm.layer {index}" + (f" : {types}" if results else "") + " {")
            for b_op in body:
                lines.append(render(b_op, "      "))
            yields = ", ".join(names[t.id] for t in results)
            lines.append("      tfm.yield" + (f" {yields} : {types}" if results else ""))
            lines.append("    }")
            for k, t in enumerate(results):
                names[t.id] = head if len(results) == 1 else f"{head}#{k}"
        ret = ", ".join(names[o.id] for o in outputs)
        ret_types = ", ".join(_type(o.shape, o.dtype) for o in outputs)
        lines.append(f"    return {ret} : {ret_types}")

        attrs = []
        for k, v in sorted(self._model_attrs().items()):
            attrs.append(f"{k} = {_attr(v)}")
        out = [f"module attributes {{tfm.model = {{{', '.join(attrs)}}}}} {{",
               f"  func.func @forward({', '.join(args)}) -> ({ret_types}) {{",
               *lines, "  }", "}", ""]
        return "\n".join(out), used_ids


def _attr(v: Union[int, float, str, bool]) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v} : i64"
    if isinstance(v, float):
        return _f64(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise TypeError(f"tfm.model attribute values must be int, float, str or bool, got {type(v).__name__}")


class BuiltModel:
    """A model made by `Builder.build()`: its `tfm` IR and parameter table.
    `llmir.compile(model, plan, train=...)` takes it like a GPT2/Llama config
    (batch and seq are the builder's)."""

    def __init__(self, mlir: str, batch: int, seq: int, params: "OrderedDict[str, Shape]",
                 dtypes: Dict[str, str], kinds: Dict[str, str], attrs: Dict[str, object],
                 costs: Dict[str, object]):
        self.mlir = mlir
        self.batch = batch
        self.seq = seq
        self.params = params
        self.dtypes = dtypes
        self.kinds = kinds  # "matrix" | "norm" | "bias": decides random_weights' init
        self.attrs = attrs
        self.costs = costs

    @property
    def num_layers(self) -> int:
        return int(self.attrs.get("num_layers", 0))

    @property
    def vocab_size(self) -> int:
        return int(self.attrs.get("vocab_size", 0))

    def to_mlir(self) -> str:
        """The module as `tfm` dialect text (what `llm-opt` reads)."""
        return self.mlir

    def save(self, path: str) -> None:
        """Writes the IR to `path`."""
        with open(path, "w") as f:
            f.write(self.mlir)

    def param_shapes(self) -> "OrderedDict[str, Shape]":
        """{HF name: shape} in declaration order."""
        return OrderedDict(self.params)

    def num_params(self) -> int:
        return int(sum(int(np.prod(s, dtype=np.int64)) for s in self.params.values()))

    def random_weights(self, seed: int = 0, std: float = 0.02) -> "OrderedDict[str, np.ndarray]":
        """Deterministic init like `llmir.random_weights`: normal(0, std) matrices, ones for
        norm scales, zeros for biases (float32)."""
        from .weights import init_params

        return init_params(((n, s, self.kinds.get(n, "matrix")) for n, s in self.params.items()), seed, std)

    def __repr__(self) -> str:
        return (f"BuiltModel(batch={self.batch}, seq={self.seq}, layers={self.num_layers}, "
                f"params={len(self.params)})")
