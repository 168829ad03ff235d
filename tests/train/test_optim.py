"""Optimizer parameter groups and learning-rate schedules."""

from __future__ import annotations

import math

import pytest
import torch

from cellmae.train.config import OptimConfig, ScheduleConfig
from cellmae.train.optim import create_optimizer, decayed_parameter_names, no_decay_parameter_names
from cellmae.train.schedules import create_scheduler, lr_factor


@pytest.fixture(scope="module")
def camae() -> torch.nn.Module:
    from cellmae.models import create_model

    return create_model("camae_vit_tiny_patch8_64", depth=2, embed_dim=64, num_heads=2, img_size=32)


def test_no_weight_decay_on_norms_biases_and_embeddings(camae: torch.nn.Module) -> None:
    params = dict(camae.named_parameters())
    skip = no_decay_parameter_names(camae)
    decayed = set(decayed_parameter_names(camae))
    assert decayed and skip and decayed.isdisjoint(skip) and decayed | skip == set(params)
    layer_weights = {f"{m}.weight" for m, mod in camae.named_modules()
                     if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d))}
    assert decayed == layer_weights
    # norms, biases, LayerScale, the class/mask tokens and the modality tokens (a ParameterList) are not
    assert any("norm" in n for n in skip) and {"encoder.cls_token", "decoder.mask_token"} <= skip
    assert any(n.startswith("decoder.modality_tokens.") for n in skip)
    assert all(params[n].ndim <= 1 or n.endswith("_token") or ".modality_tokens." in n for n in skip)


@pytest.mark.parametrize("name", ["adamw", "lion"])
def test_optimizers_put_weight_decay_only_on_the_decay_group(camae: torch.nn.Module, name: str) -> None:
    opt = create_optimizer(camae, OptimConfig(name=name, weight_decay=0.1), lr=1e-3)
    assert type(opt).__name__ == {"adamw": "AdamW", "lion": "Lion"}[name]
    by_name = {g["name"]: g for g in opt.param_groups}
    assert by_name["no_decay"]["weight_decay"] == 0.0 and by_name["decay"]["weight_decay"] == 0.1
    n_params = sum(len(g["params"]) for g in opt.param_groups)
    assert n_params == len(list(camae.parameters()))


def _lrs(sched_cfg: ScheduleConfig, total: int) -> list[float]:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = create_scheduler(opt, sched_cfg, total)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_warmup_cosine_matches_the_closed_form() -> None:
    lrs = _lrs(ScheduleConfig(name="cosine", warmup_steps=10, min_lr_ratio=0.1), 110)
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(lrs[:9], lrs[1:10], strict=True))
    assert lrs[60] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lrs[-1] == pytest.approx(lr_factor(109, total_steps=110, warmup_steps=10, min_lr_ratio=0.1))
    assert min(lrs) >= 0.1 - 1e-9


def test_onecycle_peaks_after_warmup_and_anneals() -> None:
    lrs = _lrs(ScheduleConfig(name="onecycle", warmup_fraction=0.2, div_factor=10, final_div_factor=100), 100)
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    assert 18 <= peak <= 21 and lrs[peak] == pytest.approx(1.0, rel=1e-3)
    assert lrs[0] == pytest.approx(0.1) and lrs[-1] < 0.01


def test_constant_schedule_with_warmup() -> None:
    lrs = _lrs(ScheduleConfig(name="constant", warmup_steps=4), 10)
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0]) and lrs[4:] == pytest.approx([1.0] * 6)
