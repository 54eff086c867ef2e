"""PyTorch numeric oracle: GPT-2 and LLaMA written from the Hugging Face semantics (no transformers dependency).

``params`` is a dict {HF name: tensor} with exactly the names of ``weights.param_shapes(cfg)`` (numpy arrays are
accepted and converted).  Dropout is not modelled (HF eval mode / training with all dropouts 0).

Numerics follow HF's eager implementations: GPT-2 Conv1D as ``addmm(b, x, W)``, attention scores divided by
``sqrt(head_dim)``, masked with ``finfo.min``; LLaMA RMSNorm in float32, softmax in float32, RoPE rotate-half.

``compute="bf16"`` (or ``"f16"``) mirrors ``llm-opt --llm-mixed-precision``: the math stays float32, but every
parameter use reads a rounded copy and every op result (and the gradient flowing back into it) is rounded to
bf16 at the same points as the compiler's IR -- after each embedding, add, norm, linear (bias included), attention
(computed whole in float32), activation and RoPE; the cross-entropy reads the rounded logits in float32.
Training with ``compute="f16"`` adds dynamic loss scaling as ``llm-run`` does it (torch.cuda.amp.GradScaler's policy,
written out here because GradScaler is CUDA-only in torch 1.13): the backward starts from the scale S, gradients are
multiplied by 1/S, a step with a non-finite gradient is skipped and halves S, ``growth_interval`` good steps double it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .config import ModelConfig, load_config
from .weights import normalize_params

__all__ = [
    "activation",
    "to_torch_params",
    "load_params",
    "rotate_half",
    "rope_inv_freq",
    "rope_cos_sin",
    "apply_rope",
    "forward",
    "generate",
    "loss",
    "loss_and_grads",
    "batch_for_step",
    "param_groups",
    "train",
    "main",
]

Params = Mapping[str, Any]

# --------------------------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------------------------


class _RoundTrip(torch.autograd.Function):
    """x rounded to ``dtype`` (nearest even) and back to float32; the gradient is rounded the same way -- a compute-
    typed value in the IR and the compute-typed gradient its VJP stores."""

    @staticmethod
    def forward(ctx, x, dtype):  # type: ignore[override]
        ctx.dtype = dtype
        return x.to(dtype).to(x.dtype)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        return g.to(ctx.dtype).to(g.dtype), None


COMPUTE_DTYPES = {"f32": None, "bf16": torch.bfloat16, "f16": torch.float16}


def rounder(compute: str = "f32") -> Callable[[torch.Tensor], torch.Tensor]:
    """The rounding of a compute-typed store: identity for f32."""
    if compute not in COMPUTE_DTYPES:
        raise ValueError(f"compute must be one of {', '.join(COMPUTE_DTYPES)}, got {compute!r}")
    dtype = COMPUTE_DTYPES[compute]
    if dtype is None:
        return lambda x: x
    return lambda x: _RoundTrip.apply(x, dtype)


class _CastParams(Mapping):
    """Each read of a parameter is its own rounded copy (the IR casts once per user op)."""

    def __init__(self, params: Params, r: Callable[[torch.Tensor], torch.Tensor]):
        self._p, self._r = params, r

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._r(self._p[name])

    def __iter__(self):
        return iter(self._p)

    def __len__(self) -> int:
        return len(self._p)


def _gelu_new(x: torch.Tensor) -> torch.Tensor:  # transformers NewGELUActivation
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def _gelu_fast(x: torch.Tensor) -> torch.Tensor:  # transformers FastGELUActivation
    return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


_ACT: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu_new": _gelu_new,
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,
    "gelu_fast": _gelu_fast,
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
}


def activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    try:
        return _ACT[name]
    except KeyError:
        raise ValueError(f"unsupported activation {name!r} ({', '.join(_ACT)})") from None


def to_torch_params(
    cfg: ModelConfig, params: Params, dtype: torch.dtype = torch.float32, requires_grad: bool = False
) -> Dict[str, torch.Tensor]:
    """Validates names/shapes (weights.normalize_params) and returns fresh torch tensors (copies) of ``dtype``."""
    norm = normalize_params(cfg, params)
    out = {}
    for name, t in norm.items():
        if not isinstance(t, torch.Tensor):
            t = torch.from_numpy(np.ascontiguousarray(t))
        t = t.detach().to(dtype=dtype, copy=True)
        out[name] = t.requires_grad_(requires_grad)
    return out


def load_params(cfg: ModelConfig, path: str, dtype: torch.dtype = torch.float32) -> Dict[str, torch.Tensor]:
    """Loads a safetensors file (HF names) as torch tensors of ``dtype`` (BF16/F16 are upcast exactly)."""
    from .safetensors import load_file

    return to_torch_params(cfg, load_file(path), dtype=dtype)


def _rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:  # LlamaRMSNorm
    in_dtype = x.dtype
    h = x.to(torch.float32)
    var = h.pow(2).mean(-1, keepdim=True)
    h = h * torch.rsqrt(var + eps)
    return w * h.to(in_dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rope_inv_freq(cfg: ModelConfig) -> torch.Tensor:
    """HF: 1 / theta ** (arange(0, D, 2) / D), with rope_scaling 'llama3' applied (linear scales positions)."""
    D = cfg.head_dim
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    rs = cfg.rope_scaling
    if rs is not None and rs["rope_type"] == "llama3":
        factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        low_wl, high_wl = old / lo, old / hi
        wavelen = 2 * math.pi / inv
        inv_l = torch.where(wavelen > low_wl, inv / factor, inv)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
        medium = ~(wavelen < high_wl) * ~(wavelen > low_wl)
        inv = torch.where(medium, smoothed, inv_l)
    return inv


def rope_cos_sin(cfg: ModelConfig, seq_len: int, dtype: torch.dtype = torch.float32) -> Tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape [seq_len, head_dim] for positions 0..seq_len-1 (emb = cat(freqs, freqs))."""
    inv = rope_inv_freq(cfg)
    t = torch.arange(seq_len, dtype=torch.int64).float()
    if cfg.rope_scaling is not None and cfg.rope_scaling["rope_type"] == "linear":
        t = t / cfg.rope_scaling["factor"]
    freqs = torch.outer(t, inv)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [..., S, D]; cos/sin: [S, D]."""
    return x * cos + rotate_half(x) * sin


def _causal_softmax_attention(q, k, v, divisors: Sequence[float], fp32_softmax: bool) -> torch.Tensor:
    """q: [B,H,S,D], k/v: [B,H,S,D] -> [B,H,S,D]; scores divided by each of ``divisors`` in turn."""
    S = q.shape[-2]
    w = torch.matmul(q, k.transpose(-1, -2))
    for d in divisors:
        w = w / d
    mask = torch.ones(S, S, dtype=torch.bool, device=q.device).tril()
    w = w.masked_fill(~mask, torch.finfo(w.dtype).min)
    w = F.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype) if fp32_softmax else F.softmax(w, dim=-1)
    return torch.matmul(w, v)


def _conv1d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # transformers Conv1D
    out_shape = x.shape[:-1] + (w.shape[1],)
    return torch.addmm(b, x.reshape(-1, x.shape[-1]), w).view(out_shape)


def _linear(x: torch.Tensor, p: Params, name: str) -> torch.Tensor:
    return F.linear(x, p[name + ".weight"], p.get(name + ".bias"))


def _check_ids(cfg: ModelConfig, ids: Any) -> torch.Tensor:
    if not isinstance(ids, torch.Tensor):
        ids = torch.as_tensor(np.asarray(ids))
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise ValueError(f"input_ids must be integers, got {ids.dtype}")
    if ids.dim() == 1:
        ids = ids.unsqueeze(0)
    if ids.dim() != 2 or ids.shape[1] < 1:
        raise ValueError(f"input_ids must be [B, S] (or [S]), got shape {list(ids.shape)}")
    ids = ids.to(torch.int64)
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= cfg.vocab_size):
        raise ValueError(f"input_ids out of range [0, {cfg.vocab_size}): min {int(ids.min())}, max {int(ids.max())}")
    if cfg.is_gpt2 and ids.shape[1] > cfg.max_position_embeddings:
        raise ValueError(f"sequence length {ids.shape[1]} exceeds n_positions {cfg.max_position_embeddings}")
    return ids


# --------------------------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------------------------


def _gpt2_hidden(cfg: ModelConfig, p: Params, ids: torch.Tensor, r=lambda x: x) -> torch.Tensor:
    B, S = ids.shape
    h, H, D = cfg.hidden_size, cfg.num_heads, cfg.head_dim
    act = activation(cfg.activation)
    x = r(F.embedding(ids, p["wte.weight"]) + p["wpe.weight"][:S].unsqueeze(0))
    for i in range(cfg.num_layers):
        pre = f"h.{i}."
        a = r(F.layer_norm(x, (h,), p[pre + "ln_1.weight"], p[pre + "ln_1.bias"], cfg.norm_eps))
        qkv = r(_conv1d(a, p[pre + "attn.c_attn.weight"], p[pre + "attn.c_attn.bias"]))
        q, k, v = qkv.split(h, dim=-1)
        q, k, v = (t.view(B, S, H, D).transpose(1, 2) for t in (q, k, v))
        divs = []  # HF GPT2Attention._attn divides once per enabled scaling
        if cfg.scale_attn_weights:
            divs.append(float(D) ** 0.5)
        if cfg.scale_attn_by_inverse_layer_idx:
            divs.append(float(i + 1))
        o = r(_causal_softmax_attention(q, k, v, divs, fp32_softmax=False))
        o = o.transpose(1, 2).reshape(B, S, h)
        x = r(x + r(_conv1d(o, p[pre + "attn.c_proj.weight"], p[pre + "attn.c_proj.bias"])))
        m = r(F.layer_norm(x, (h,), p[pre + "ln_2.weight"], p[pre + "ln_2.bias"], cfg.norm_eps))
        m = r(act(r(_conv1d(m, p[pre + "mlp.c_fc.weight"], p[pre + "mlp.c_fc.bias"]))))
        x = r(x + r(_conv1d(m, p[pre + "mlp.c_proj.weight"], p[pre + "mlp.c_proj.bias"])))
    return r(F.layer_norm(x, (h,), p["ln_f.weight"], p["ln_f.bias"], cfg.norm_eps))


def _llama_hidden(cfg: ModelConfig, p: Params, ids: torch.Tensor, r=lambda x: x) -> torch.Tensor:
    B, S = ids.shape
    H, KV, D = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    rep = H // KV
    act = activation(cfg.activation)
    x = F.embedding(ids, p["model.embed_tokens.weight"])
    cos, sin = rope_cos_sin(cfg, S, dtype=x.dtype)
    for i in range(cfg.num_layers):
        pre = f"model.layers.{i}."
        a = r(_rms_norm(x, p[pre + "input_layernorm.weight"], cfg.norm_eps))
        q = r(_linear(a, p, pre + "self_attn.q_proj")).view(B, S, H, D).transpose(1, 2)
        k = r(_linear(a, p, pre + "self_attn.k_proj")).view(B, S, KV, D).transpose(1, 2)
        v = r(_linear(a, p, pre + "self_attn.v_proj")).view(B, S, KV, D).transpose(1, 2)
        q, k = r(apply_rope(q, cos, sin)), r(apply_rope(k, cos, sin))
        if rep > 1:  # HF repeat_kv: kv head j serves query heads j*rep .. j*rep+rep-1
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        o = r(_causal_softmax_attention(q, k, v, [math.sqrt(D)], fp32_softmax=True))
        o = o.transpose(1, 2).reshape(B, S, H * D)
        x = r(x + r(_linear(o, p, pre + "self_attn.o_proj")))
        m = r(_rms_norm(x, p[pre + "post_attention_layernorm.weight"], cfg.norm_eps))
        m = r(r(act(r(_linear(m, p, pre + "mlp.gate_proj")))) * r(_linear(m, p, pre + "mlp.up_proj")))
        x = r(x + r(_linear(m, p, pre + "mlp.down_proj")))
    return r(_rms_norm(x, p["model.norm.weight"], cfg.norm_eps))


def _embedding_name(cfg: ModelConfig) -> str:
    return "wte.weight" if cfg.is_gpt2 else "model.embed_tokens.weight"


def forward(cfg: ModelConfig, params: Params, input_ids: Any, compute: str = "f32") -> torch.Tensor:
    """Logits [B, S, vocab] for input_ids [B, S] (a 1-D [S] input is treated as B = 1); ``compute``: see the module
    docstring (the logits are float32 holding compute-typed values)."""
    p = params if all(isinstance(t, torch.Tensor) for t in params.values()) else to_torch_params(cfg, params)
    r = rounder(compute)
    if compute != "f32":
        p = _CastParams(p, r)
    ids = _check_ids(cfg, input_ids)
    hidden = _gpt2_hidden(cfg, p, ids, r) if cfg.is_gpt2 else _llama_hidden(cfg, p, ids, r)
    head = p[_embedding_name(cfg)] if cfg.tie_word_embeddings else p["lm_head.weight"]
    return r(F.linear(hidden, head))


@torch.no_grad()
def generate(
    cfg: ModelConfig,
    params: Params,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    eos_id: Optional[int] = None,
    pad_id: Optional[int] = None,
    compute: str = "f32",
) -> List[List[int]]:
    """Greedy decoding, the oracle of ``llm-run --generate``: each prompt (its own length) is extended one token at a
    time by recomputing the whole forward pass (no cache, nothing shared between sequences) and taking the argmax of
    the last position's logits.  Returns ``max_new_tokens`` ids per prompt; after ``eos_id`` the rest is ``pad_id``
    (or ``eos_id`` when no pad id is given), as llm-run writes them.
    """
    p = params if all(isinstance(t, torch.Tensor) for t in params.values()) else to_torch_params(cfg, params)
    fill = pad_id if pad_id is not None else (eos_id if eos_id is not None else 0)
    out: List[List[int]] = []
    for prompt in prompts:
        ids = [int(t) for t in prompt]
        if not ids:
            raise ValueError("empty prompt")
        new: List[int] = []
        for _ in range(max_new_tokens):
            token = int(torch.argmax(forward(cfg, p, [ids], compute)[0, -1]))
            new.append(token)
            ids.append(token)
            if eos_id is not None and token == eos_id:
                break
        out.append(new + [fill] * (max_new_tokens - len(new)))
    return out


def loss(cfg: ModelConfig, params: Params, input_ids: Any, labels: Any, ignore_index: int = -100,
         compute: str = "f32") -> torch.Tensor:
    """Mean cross-entropy of forward(input_ids) against ``labels`` [B, S].

    ``labels`` are the already-aligned next-token targets (batch_for_step's targets), NOT shifted inside as HF's
    ``labels=`` argument is.  Positions equal to ``ignore_index`` are excluded from the mean.
    """
    logits = forward(cfg, params, input_ids, compute)
    if not isinstance(labels, torch.Tensor):
        labels = torch.as_tensor(np.asarray(labels))
    labels = labels.to(torch.int64).reshape(logits.shape[:-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=ignore_index)


def loss_and_grads(cfg: ModelConfig, params: Params, input_ids: Any, labels: Any) -> Tuple[float, Dict[str, torch.Tensor]]:
    """(loss, {name: d loss / d param}) in fp32 -- what every parallel layout must reproduce."""
    p = to_torch_params(cfg, params, requires_grad=True)
    l = loss(cfg, p, input_ids, labels)
    l.backward()
    return float(l.detach()), {n: t.grad.detach() for n, t in p.items()}


# --------------------------------------------------------------------------------------------------------------------
# Training (INTERFACES.md "Training semantics")
# --------------------------------------------------------------------------------------------------------------------


def batch_for_step(tokens: Any, step: int, B: int, S: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Step ``step`` reads the window of B*S+1 tokens starting at step*B*S, wrapping around the end of ``tokens``.

    Returns (inputs, targets), both int64 [B, S]: inputs = window[:-1], targets = window[1:].
    """
    if B < 1 or S < 1 or step < 0:
        raise ValueError(f"need B >= 1, S >= 1, step >= 0 (got B={B}, S={S}, step={step})")
    t = tokens if isinstance(tokens, torch.Tensor) else torch.as_tensor(np.asarray(tokens))
    if t.dim() != 1 or t.numel() == 0 or t.dtype.is_floating_point:
        raise ValueError(f"tokens must be a non-empty 1-D integer array, got shape {list(t.shape)} dtype {t.dtype}")
    n = t.numel()
    idx = (step * B * S + torch.arange(B * S + 1, dtype=torch.int64)) % n
    window = t.to(torch.int64)[idx]
    return window[:-1].view(B, S), window[1:].view(B, S)


def param_groups(params: Mapping[str, torch.Tensor], weight_decay: float) -> List[Dict[str, Any]]:
    """AdamW groups: weight decay on parameters with ndim >= 2 only."""
    decay = [t for t in params.values() if t.dim() >= 2]
    no_decay = [t for t in params.values() if t.dim() < 2]
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


LR_SCHEDULES = ("constant", "cosine", "linear")


def lr_at(step: int, lr: float, schedule: str = "constant", warmup_steps: int = 0, min_lr: float = 0.0,
          max_steps: Optional[int] = None) -> float:
    """The learning rate of 0-based step ``step`` (llm-run --lr-schedule): ``lr * (step + 1) / warmup_steps`` while
    ``step < warmup_steps``; then ``lr`` (constant), or a decay from ``lr`` to ``min_lr`` reached at ``max_steps``:
    cosine ``min_lr + (lr - min_lr) * (1 + cos(pi * t)) / 2`` or linear ``min_lr + (lr - min_lr) * (1 - t)`` with
    ``t = (step - warmup_steps) / (max_steps - warmup_steps)``; ``min_lr`` from ``max_steps`` on."""
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"lr schedule must be one of {LR_SCHEDULES}, got {schedule!r}")
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return lr
    if max_steps is None or max_steps <= warmup_steps:
        raise ValueError(f"a {schedule} schedule needs max_steps > warmup_steps ({warmup_steps}), got {max_steps}")
    if step >= max_steps:
        return min_lr
    t = (step - warmup_steps) / (max_steps - warmup_steps)
    coeff = 0.5 * (1.0 + math.cos(math.pi * t)) if schedule == "cosine" else 1.0 - t
    return min_lr + coeff * (lr - min_lr)


def train(
    cfg: ModelConfig,
    params: Params,
    tokens: Any,
    steps: int,
    B: int,
    S: int,
    lr: float = 3e-4,
    weight_decay: float = 0.0,
    *,
    grad_clip: Optional[float] = None,
    start_step: int = 0,
    callback: Optional[Callable[[int, float, Dict[str, torch.Tensor]], None]] = None,
    compute: str = "f32",
    lr_schedule: str = "constant",
    warmup_steps: int = 0,
    min_lr: float = 0.0,
    max_steps: Optional[int] = None,
    history: Optional[List[Dict[str, float]]] = None,
    loss_scale_init: float = 65536.0,
    loss_scale_growth_interval: int = 2000,
) -> Tuple[List[float], Dict[str, torch.Tensor]]:
    """fp32 training (f32 master weights and moments whatever ``compute`` is); returns (per-step losses, final
    params).  ``params`` is not modified.

    AdamW(betas=(0.9, 0.95), eps=1e-8), decoupled weight decay on ndim >= 2 params; the learning rate of step i is
    ``lr_at(i, lr, lr_schedule, warmup_steps, min_lr, max_steps)`` (a LambdaLR; ``max_steps`` defaults to
    ``start_step + steps``, as llm-run's --max-steps defaults to --steps); no clipping unless ``grad_clip``
    (torch.nn.utils.clip_grad_norm_, global L2 norm).  Step i (counting from ``start_step``) uses
    batch_for_step(tokens, i, B, S).  ``callback(step, loss, params)`` runs after each optimizer step;
    ``history`` (a list) gets ``{"lr": ..., "grad_norm": ...}`` per step (the norm before clipping; with
    ``compute="f16"`` also ``"loss_scale"`` (the step's S) and ``"skipped"``, and the norm is inf on a skipped step).
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if max_steps is None:
        max_steps = start_step + steps
    p = to_torch_params(cfg, params, dtype=torch.float32, requires_grad=True)
    opt = torch.optim.AdamW(param_groups(p, weight_decay), lr=lr, betas=(0.9, 0.95), eps=1e-8)
    # LambdaLR counts its own steps from 0: offset it to the absolute step (a resumed run continues the schedule).
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: lr_at(start_step + k, lr, lr_schedule, warmup_steps, min_lr, max_steps) / lr if lr else 0.0)
    losses: List[float] = []
    scaled = compute == "f16"
    scale, good_steps = float(np.float32(loss_scale_init)), 0
    for i in range(start_step, start_step + steps):
        inputs, targets = batch_for_step(tokens, i, B, S)
        l = loss(cfg, p, inputs, targets, compute=compute)
        opt.zero_grad(set_to_none=True)
        (l * scale if scaled else l).backward()
        grads = [t for t in p.values() if t.grad is not None]
        skipped = False
        if scaled:  # GradScaler.unscale_: exact for a power-of-two scale
            for t in grads:
                t.grad.mul_(1.0 / scale)
            skipped = not all(bool(torch.isfinite(t.grad).all()) for t in grads)
        norm = math.inf
        if skipped:
            pass
        elif grad_clip is not None:
            norm = float(torch.nn.utils.clip_grad_norm_(grads, grad_clip))
        elif history is not None:
            norm = float(torch.norm(torch.stack([torch.norm(t.grad.detach(), 2.0) for t in grads]), 2.0))
        if history is not None:
            history.append({"lr": opt.param_groups[0]["lr"], "grad_norm": norm})
            if scaled:
                history[-1].update(loss_scale=scale, skipped=skipped)
        if not skipped:
            opt.step()
        sched.step()
        if scaled:  # GradScaler.update
            if skipped:
                scale, good_steps = scale * 0.5, 0
            else:
                good_steps += 1
                if good_steps >= loss_scale_growth_interval:
                    scale, good_steps = scale * 2.0, 0
        losses.append(float(l.detach()))
        if callback is not None:
            callback(i, losses[-1], p)
    return losses, {n: t.detach() for n, t in p.items()}


# --------------------------------------------------------------------------------------------------------------------
# CLI: python -m llmir.reference --config C --weights W --data T.npy --steps N --batch B --seq S [...]
# --------------------------------------------------------------------------------------------------------------------


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m llmir.reference",
                                 description="Train the PyTorch reference model (fp32, CPU) like llm-run does.")
    ap.add_argument("--config", required=True)
    ap.add_argument("--weights", required=True, help="safetensors with HF names")
    ap.add_argument("--data", required=True, help="1-D integer .npy token file")
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--batch", type=int, required=True, help="global batch B")
    ap.add_argument("--seq", type=int, required=True, help="sequence length S")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--grad-clip", "--clip-grad-norm", dest="grad_clip", type=float, default=None)
    ap.add_argument("--lr-schedule", default="constant", choices=LR_SCHEDULES)
    ap.add_argument("--warmup-steps", type=int, default=0)
    ap.add_argument("--min-lr", type=float, default=0.0)
    ap.add_argument("--max-steps", type=int, default=None, help="default: --steps")
    ap.add_argument("--compute", default="f32", choices=sorted(COMPUTE_DTYPES),
                    help="mirror --llm-mixed-precision compute=... (f32 master weights)")
    ap.add_argument("--loss-scale-init", type=float, default=65536.0, help="compute f16: the initial loss scale")
    ap.add_argument("--loss-scale-growth-interval", type=int, default=2000)
    ap.add_argument("--log-json", help="write {'step': i, 'loss': x, 'lr': ..., 'grad_norm': ...} per line")
    ap.add_argument("--save-weights", help="write the final parameters (safetensors, F32)")
    ap.add_argument("--dump-grads", help="write the step-0 gradients (before any update) as safetensors")
    args = ap.parse_args(argv)
    try:
        from .safetensors import save_file
        from .weights import load_tokens

        cfg = load_config(args.config)
        params = load_params(cfg, args.weights)
        tokens = load_tokens(args.data)
        if args.dump_grads:
            x, y = batch_for_step(tokens, 0, args.batch, args.seq)
            l0, grads = loss_and_grads(cfg, params, x, y)
            save_file({n: g.numpy() for n, g in grads.items()}, args.dump_grads, metadata={"loss": repr(l0)})
        log = open(args.log_json, "w") if args.log_json else None

        history: List[Dict[str, float]] = []

        def cb(step: int, l: float, _p: Dict[str, torch.Tensor]) -> None:
            print(f"step {step} loss {l:.6f} lr {history[-1]['lr']:.4e} grad norm {history[-1]['grad_norm']:.4f}",
                  file=sys.stderr)
            if log:
                log.write(json.dumps({"step": step, "loss": l, **history[-1]}) + "\n")
                log.flush()

        _, final = train(cfg, params, tokens, args.steps, args.batch, args.seq, args.lr, args.weight_decay,
                         grad_clip=args.grad_clip, callback=cb, compute=args.compute, lr_schedule=args.lr_schedule,
                         warmup_steps=args.warmup_steps, min_lr=args.min_lr, max_steps=args.max_steps,
                         history=history, loss_scale_init=args.loss_scale_init,
                         loss_scale_growth_interval=args.loss_scale_growth_interval)
        if log:
            log.close()
        if args.save_weights:
            save_file({n: t.numpy() for n, t in final.items()}, args.save_weights, metadata={"format": "pt"})
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
