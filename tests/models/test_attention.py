"""The chunked CPU attention equals softmax attention by its definition, the CPU path is chosen by
the documented rule, and the models built on it compute what timm's modules (SDPA) compute: forward
outputs and gradients in fp32."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from timm.layers import Attention as TimmAttention
from timm.models.vision_transformer import ParallelScalingBlock as TimmParallelScalingBlock

from cellmae.models import attention as attn_mod
from cellmae.models import create_model
from cellmae.models.attention import Attention, ParallelScalingBlock, attention

from .conftest import SMALL, uint8_images


def _definition(q, k, v):
    """softmax(q k^T / sqrt(d)) v in float64 (Vaswani et al. 2017, eq. 1)."""
    q, k, v = q.double(), k.double(), v.double()
    return torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, dim=-1) @ v


@pytest.mark.parametrize("grad", [False, True], ids=["inference", "autograd"])  # the two paths of attention()
@pytest.mark.parametrize("chunk", [2**21, 40 * 40 * 3, 40 * 40, 1])  # whole batch, 3 heads across images, heads, one head
def test_chunked_attention_matches_the_definition(monkeypatch, chunk, grad):
    monkeypatch.setattr(attn_mod, "CPU_ATTENTION", "chunked")
    monkeypatch.setattr(attn_mod, "CHUNK_SCORES", chunk)
    gen = torch.Generator().manual_seed(0)
    # strided (B, H, N, d) views of a (B, N, 3, H, d) projection, as the models hand them over
    q, k, v = torch.randn(3, 40, 3, 4, 16, generator=gen).permute(2, 0, 3, 1, 4).unbind(0)
    with torch.set_grad_enabled(grad):
        out = attention(*(t.requires_grad_(grad) for t in (q, k, v)))
    assert out.shape == (3, 4, 40, 16) and out.requires_grad == grad
    torch.testing.assert_close(out.detach().double(), _definition(q, k, v).detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("chunk", [30 * 30, 30 * 30 * 2])  # one head per chunk; two, across images
def test_chunked_attention_gradients_match_sdpa(monkeypatch, chunk):
    monkeypatch.setattr(attn_mod, "CPU_ATTENTION", "chunked")
    monkeypatch.setattr(attn_mod, "CHUNK_SCORES", chunk)
    gen = torch.Generator().manual_seed(1)
    grads = []
    for fn in (attention, F.scaled_dot_product_attention):
        q, k, v = (torch.randn(2, 3, 30, 8, generator=torch.Generator().manual_seed(i)).requires_grad_() for i in range(3))
        w = torch.randn(2, 3, 30, 8, generator=gen.manual_seed(7))
        (fn(q, k, v) * w).sum().backward()
        grads.append([t.grad for t in (q, k, v)])
    for ours, sdpa in zip(*grads, strict=True):
        torch.testing.assert_close(ours, sdpa, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("amx", [True, False], ids=["amx", "no-amx"])
def test_the_cpu_path_follows_the_documented_rule(monkeypatch, amx):
    """fp32: SDPA; bf16/fp16 under autograd: chunked; bf16 inference: SDPA only on a CPU with AMX."""
    monkeypatch.setattr(attn_mod, "cpu_has_amx", lambda: amx)
    chosen = {}
    for dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
        for grad in (False, True):  # grad: autograd records for this call
            chosen[dtype, grad] = attn_mod.cpu_path(dtype, grad)
    assert chosen == {
        (torch.float32, False): "sdpa", (torch.float32, True): "sdpa",
        (torch.float64, False): "sdpa", (torch.float64, True): "sdpa",
        (torch.bfloat16, False): "sdpa" if amx else "chunked", (torch.bfloat16, True): "chunked",
        (torch.float16, False): "chunked", (torch.float16, True): "chunked",
    }
    for forced in ("chunked", "sdpa"):
        monkeypatch.setattr(attn_mod, "CPU_ATTENTION", forced)
        assert {attn_mod.cpu_path(d, g) for d, g in chosen} == {forced}


def test_the_chosen_path_is_the_one_that_runs(monkeypatch):
    """attention() calls SDPA exactly when cpu_path says so, and chunks otherwise (bf16 inference, both CPUs)."""
    calls = []
    monkeypatch.setattr(attn_mod.F, "scaled_dot_product_attention", lambda q, k, v: calls.append("sdpa") or q.clone())
    q = torch.randn(2, 3, 10, 8).bfloat16()
    for amx in (True, False):
        monkeypatch.setattr(attn_mod, "cpu_has_amx", lambda amx=amx: amx)
        calls.clear()
        with torch.inference_mode():
            out = attention(q, q, q)
        assert calls == (["sdpa"] if amx else [])
        if not amx:  # the chunked product, checked against the definition at bf16 precision
            torch.testing.assert_close(out.double(), _definition(q, q, q), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("value", ["chunked", "bogus"])
def test_the_environment_variable_sets_the_cpu_path(value):
    code = ("import torch; from cellmae.models import attention as a; print(a.CPU_ATTENTION); "
            "a.attention(*[torch.zeros(1, 1, 2, 4)] * 3)")
    env = {"CELLMAE_CPU_ATTENTION": value, "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if value == "chunked":
        assert run.returncode == 0 and run.stdout.split() == ["chunked"], run.stderr
    else:
        assert run.returncode != 0
        assert "CELLMAE_CPU_ATTENTION='bogus': use one of auto, chunked, sdpa, or unset it" in run.stderr.splitlines()[-1]


def _same_as_timm(ours: torch.nn.Module, timm_module: torch.nn.Module, x: torch.Tensor) -> None:
    assert list(ours.state_dict()) == list(timm_module.state_dict())  # checkpoints load unchanged
    timm_module.load_state_dict(ours.state_dict())
    outs = []
    for m in (ours, timm_module):
        xi = x.clone().requires_grad_()
        y = m(xi)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        outs.append((y.detach(), xi.grad, {n: p.grad for n, p in m.named_parameters()}))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outs[0][1], outs[1][1], rtol=1e-5, atol=1e-5)
    for name, g in outs[0][2].items():
        torch.testing.assert_close(g, outs[1][2][name], rtol=1e-4, atol=1e-5, msg=name)


def test_attention_module_equals_timm():
    torch.manual_seed(0)
    x = torch.randn(2, 20, 32)
    _same_as_timm(Attention(32, num_heads=4, qkv_bias=True), TimmAttention(32, num_heads=4, qkv_bias=True), x)


def test_parallel_scaling_block_equals_timm():
    torch.manual_seed(0)
    kw = {"dim": 48, "num_heads": 3, "qkv_bias": False, "qk_norm": True, "init_values": 0.5}
    _same_as_timm(ParallelScalingBlock(**kw), TimmParallelScalingBlock(**kw), torch.randn(2, 17, 48))


@pytest.mark.parametrize("separate", [True, False])
def test_camae_loss_and_gradients_do_not_depend_on_the_attention_path(monkeypatch, separate):
    """The whole CA-MAE (OpenPhenom layout: a block stack per channel slot) with chunked attention vs
    SDPA everywhere (encoder, cross-attention, decoder stacks): same predictions and gradients in fp32."""
    torch.manual_seed(0)
    model = create_model("camae_vit_tiny_patch8_64", **{**SMALL, "decoder_depth": 2}, decoder_channel_slots=4,
                         decoder_separate_channel_blocks=separate)
    x = uint8_images(2, 3)
    monkeypatch.setattr(attn_mod, "CHUNK_SCORES", 64 * 64)  # force several chunks at 64 tokens/channel
    runs = []
    for path in ("chunked", "sdpa"):
        monkeypatch.setattr(attn_mod, "CPU_ATTENTION", path)
        model.zero_grad()
        out = model(x, channels=["DNA", "ER", "RNA"], mask_seed=3)
        out["loss"].backward()
        runs.append((out["pred"].detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    torch.testing.assert_close(runs[0][0], runs[1][0], rtol=1e-5, atol=1e-5)
    assert runs[0][1].keys() == runs[1][1].keys()
    scale = max(g.abs().max() for g in runs[1][1].values())
    for name, g in runs[0][1].items():
        torch.testing.assert_close(g, runs[1][1][name], rtol=1e-4, atol=1e-6 * float(scale), msg=name)
