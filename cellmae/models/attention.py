"""Softmax attention, and the timm attention modules the models use, routed through it.

On CUDA (and any non-CPU device) :func:`attention` is ``F.scaled_dot_product_attention``. On CPU it
is either SDPA (PyTorch's flash-attention kernel) or the explicit product ``softmax(q k^T / sqrt(d)) v``
computed a few heads at a time so that each chunk's score matrix stays in cache, whichever was measured
faster for the call (docs/speed.md, "Which attention on which CPU"):

* float32 and float64: SDPA;
* bfloat16 and float16 while autograd records (training): chunked, whose backward beats the flash
  kernel's on these ViTs' 32- and 64-wide heads, on CPUs with and without AMX;
* bfloat16 without autograd (inference): SDPA where the CPU has AMX tiles, which the flash kernel's
  bf16 GEMMs use; chunked where it has not (an AVX512-BF16 CPU without AMX ran it faster chunked).

The rule depends on the call's dtype, whether gradients are recorded and the CPU's instruction set,
never on timings taken at run time, so a given machine always computes the same numbers.
``CPU_ATTENTION`` ("auto", "chunked" or "sdpa"; default from the ``CELLMAE_CPU_ATTENTION`` environment
variable) forces one path, e.g. for the A/B of ``benchmarks/bench_models.py``.

:class:`Attention` and :class:`ParallelScalingBlock` are timm's modules (same parameters, same
state-dict keys, same arithmetic) whose forward calls :func:`attention`; timm inlines the SDPA call
in its forwards, so the forwards are restated here. No dropout on attention weights (no preset uses it).
"""

from __future__ import annotations

import functools
import os

import torch
import torch.nn.functional as F
from timm.layers import Attention as _TimmAttention
from timm.models.vision_transformer import ParallelScalingBlock as _TimmParallelScalingBlock

from cellmae.utils.errors import InputError

CPU_PATHS = ("auto", "chunked", "sdpa")
CPU_ATTENTION = os.environ.get("CELLMAE_CPU_ATTENTION", "auto")
# Score elements per chunk on CPU: 2^21 bf16 scores are 4 MiB, one 1,537-token head of the inference
# encoder, or a few dozen 256-token decoder heads.
CHUNK_SCORES = 2**21


@functools.cache
def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles that PyTorch's CPU kernels (oneDNN, the flash kernel's brgemm) use."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private, so looked up defensively
    return bool(probe and probe())


def cpu_path(dtype: torch.dtype, recording: bool) -> str:
    """"chunked" or "sdpa": the CPU attention for a call in ``dtype``, with or without autograd recording."""
    if CPU_ATTENTION not in CPU_PATHS:
        raise InputError(f"CELLMAE_CPU_ATTENTION={CPU_ATTENTION!r}: use one of {', '.join(CPU_PATHS)}, or unset it")
    if CPU_ATTENTION != "auto":
        return CPU_ATTENTION
    if dtype not in (torch.bfloat16, torch.float16):
        return "sdpa"
    if recording or dtype != torch.bfloat16:
        return "chunked"
    return "sdpa" if cpu_has_amx() else "chunked"


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention of (B, H, Nq, d) queries over (B, H, Nk, d) keys and (B, H, Nk, dv) values."""
    if q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v)
    recording = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
    if cpu_path(q.dtype, recording) == "sdpa":
        return F.scaled_dot_product_attention(q, k, v)
    b, h, nq, d = q.shape
    nk, dv = v.shape[-2:]
    # One pass each into a packed (B*H, ., .) layout: the scaled queries, the keys transposed, the values.
    # The models hand over strided views of their projections; packed once here, every chunk's matmuls
    # read contiguous operands instead of each repacking its slice (docs/speed.md measures the difference).
    q = (q * d**-0.5).contiguous().view(b * h, nq, d)
    kt = k.transpose(-2, -1).contiguous().view(b * h, d, nk)
    v = v.contiguous().view(b * h, nk, dv)
    step = max(1, CHUNK_SCORES // (nq * nk))  # heads per chunk, across images
    # split, not indexing: the backward of a split is one cat, an index's builds a zero tensor per chunk
    chunks = zip(q.split(step), kt.split(step), v.split(step), strict=True)
    if recording:
        out = torch.cat([torch.bmm(torch.bmm(qc, ktc).softmax(dim=-1), vc) for qc, ktc, vc in chunks])
    else:  # inference: each chunk writes its rows of the output in place
        out = q.new_empty(b * h, nq, dv)
        for (qc, ktc, vc), oc in zip(chunks, out.split(step), strict=True):
            torch.bmm(torch.bmm(qc, ktc).softmax(dim=-1), vc, out=oc)
    return out.view(b, h, nq, dv)


class Attention(_TimmAttention):
    """timm's multi-head self-attention (no attention mask, gate or dropout) through :func:`attention`."""

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        if attn_mask is not None or is_causal or self.gate is not None:
            return super().forward(x, attn_mask=attn_mask, is_causal=is_causal)
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        x = attention(self.q_norm(q), self.k_norm(k), v).transpose(1, 2).reshape(b, n, self.attn_dim)
        return self.proj_drop(self.proj(self.norm(x)))


class ParallelScalingBlock(_TimmParallelScalingBlock):
    """timm's parallel-scaling ViT block (fused qkv + MLP-in projection) with :func:`attention`."""

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        if attn_mask is not None or is_causal:
            return super().forward(x, attn_mask=attn_mask, is_causal=is_causal)
        b, n, c = x.shape
        x_mlp, q, k, v = torch.split(self.in_proj(self.in_norm(x)), self.in_split, dim=-1)
        if self.mlp_bias is not None:
            x_mlp = x_mlp + self.mlp_bias
        q = self.q_norm(q.view(b, n, self.num_heads, self.head_dim)).transpose(1, 2)
        k = self.k_norm(k.view(b, n, self.num_heads, self.head_dim)).transpose(1, 2)
        v = v.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)
        x_attn = attention(q, k, v).transpose(1, 2).reshape(b, n, c)
        x_mlp = self.mlp_drop(self.mlp_act(x_mlp))
        if self.out_proj is not None:
            y = self.out_proj(torch.cat((x_attn, x_mlp), dim=-1))
        else:
            y = self.attn_out_proj(x_attn) + self.mlp_out_proj(x_mlp)
        return x + self.drop_path(self.ls(y))
