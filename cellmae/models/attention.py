"""Softmax attention, and the timm attention modules the models use, routed through it.

On CUDA (and any non-CPU device) :func:`attention` is ``F.scaled_dot_product_attention``. On CPU it
is the explicit product ``softmax(q k^T / sqrt(d)) v``, computed a few heads at a time so that each
chunk's score matrix stays in cache: PyTorch's CPU flash-attention kernel reaches a fraction of the
matmul peak on these ViTs' 32- and 64-wide heads, and one product over all heads at once streams
its scores through memory (docs/speed.md has the measurements). ``CHUNKED_CPU = False`` restores
SDPA on CPU (the A/B switch of ``benchmarks/bench_models.py``).

:class:`Attention` and :class:`ParallelScalingBlock` are timm's modules (same parameters, same
state-dict keys, same arithmetic) whose forward calls :func:`attention`; timm inlines the SDPA call
in its forwards, so the forwards are restated here. No dropout on attention weights (no preset uses it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import Attention as _TimmAttention
from timm.models.vision_transformer import ParallelScalingBlock as _TimmParallelScalingBlock

CHUNKED_CPU = True
# Score elements per chunk on CPU: 2^21 bf16 scores are 4 MiB, one 1,537-token head of the inference
# encoder, or a few dozen 256-token decoder heads.
CHUNK_SCORES = 2**21


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention of (B, H, Nq, d) queries over (B, H, Nk, d) keys and (B, H, Nk, dv) values."""
    if not (CHUNKED_CPU and q.device.type == "cpu"):
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
    if torch.is_grad_enabled() and (q.requires_grad or kt.requires_grad or v.requires_grad):
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
