#!/usr/bin/env python3
"""Writes PyTorch reference outputs (.npy) for llmir_runtime_torch_check to compare against.

Usage: torch_oracle.py OUT_DIR. Exits 77 (ctest SKIP_RETURN_CODE) when torch/numpy are missing.
Shapes and hyper-parameters here must match TorchCheck.cpp.
"""
import math
import os
import sys

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except Exception as e:  # pragma: no cover - depends on the machine
    print(f"SKIP: cannot import torch/numpy ({e})")
    sys.exit(77)

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
torch.manual_seed(1234)
torch.set_num_threads(1)


def save(name, t):
    a = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
    if a.dtype == np.float64:
        raise TypeError(f"{name}: save float32, not float64")
    np.save(os.path.join(out, name + ".npy"), np.ascontiguousarray(a))


# ---- RoPE: HF LLaMA (LlamaRotaryEmbedding + apply_rotary_pos_emb), float32 throughout.
def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def hf_rope(x, base, offset):
    b, s, h, d = x.shape
    inv_freq = 1.0 / (base ** (torch.arange(0, d, 2).float() / d))
    t = torch.arange(offset, offset + s, dtype=inv_freq.dtype)
    freqs = torch.einsum("i,j->ij", t, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[None, :, None, :], emb.sin()[None, :, None, :]
    return x * cos + rotate_half(x) * sin


B, S, H, D = 2, 37, 3, 16
x = torch.randn(B, S, H, D)
save("rope_x", x.reshape(B, S, H * D))
for name, base, offset in (("rope_y_a", 10000.0, 0), ("rope_y_b", 10000.0, 100), ("rope_y_c", 500000.0, 7)):
    save(name, hf_rope(x, base, offset).reshape(B, S, H * D))

# ---- Attention with GQA + causal mask (HF repeat_kv + matmul/softmax), and its gradients.
B, S, H, HKV, D = 2, 19, 6, 2, 8
q = torch.randn(B, S, H * D, requires_grad=True)
k = torch.randn(B, S, HKV * D, requires_grad=True)
v = torch.randn(B, S, HKV * D, requires_grad=True)
qh = q.view(B, S, H, D).transpose(1, 2)
kh = k.view(B, S, HKV, D).transpose(1, 2).repeat_interleave(H // HKV, dim=1)
vh = v.view(B, S, HKV, D).transpose(1, 2).repeat_interleave(H // HKV, dim=1)
scores = torch.matmul(qh, kh.transpose(-1, -2)) / math.sqrt(D)
mask = torch.triu(torch.ones(S, S, dtype=torch.bool), diagonal=1)
scores = scores.masked_fill(mask, float("-inf"))
probs = torch.softmax(scores, dim=-1)
attn = torch.matmul(probs, vh).transpose(1, 2).reshape(B, S, H * D)
dout = torch.randn_like(attn)
attn.backward(dout)
for name, t in (("attn_q", q), ("attn_k", k), ("attn_v", v), ("attn_out", attn),
                ("attn_lse", torch.logsumexp(scores, dim=-1)),
                ("attn_dout", dout), ("attn_dq", q.grad), ("attn_dk", k.grad), ("attn_dv", v.grad)):
    save(name, t)

# ---- Cross-entropy (mean) and its gradient.
ROWS, VOCAB = 23, 517
logits = (3.0 * torch.randn(ROWS, VOCAB)).requires_grad_()
labels = torch.randint(0, VOCAB, (ROWS,), dtype=torch.int64)
loss = F.cross_entropy(logits, labels)
loss.backward()
save("ce_logits", logits)
save("ce_labels", labels)
save("ce_loss", loss.reshape(1))
save("ce_dlogits", logits.grad)

# ---- Activations.
ax = 3.0 * torch.randn(1000)
save("act_x", ax)
save("act_gelu_tanh", F.gelu(ax, approximate="tanh"))
save("act_gelu", F.gelu(ax))
save("act_silu", F.silu(ax))

# ---- AdamW, 3 steps.
N = 257
p = torch.nn.Parameter(torch.randn(N))
save("adamw_p0", p)
opt = torch.optim.AdamW([p], lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
grads, params = [], []
for step in range(3):
    g = torch.randn(N) * (0.1 if step == 1 else 1.0)
    p.grad = g.clone()
    opt.step()
    grads.append(g)
    params.append(p.detach().clone())
save("adamw_grads", torch.stack(grads))
save("adamw_params", torch.stack(params))
print(f"torch {torch.__version__}: wrote references to {out}")
