"""The embedding runner's precision policy: on CPU under bf16 it runs a bf16 copy of the whole model.

The tolerance is the one docs/embed.md ("bf16 on CPU") documents: mean-pooled features within a
few percent of fp32. The caller's model must come back untouched.
"""

import numpy as np
import pytest
import torch

from cellmae.embed.channels import plan_channels
from cellmae.embed.featurize import ModelFeatures, inference_weights
from cellmae.models import create_model

CPU = torch.device("cpu")


@pytest.mark.parametrize("preset", ["camae_vit_tiny_patch8_64", "cnn_mae_tiny_64", "wsl_tiny_64"])
def test_bf16_runner_matches_fp32_and_leaves_the_model_alone(preset):
    torch.manual_seed(0)
    model = create_model(preset, num_classes=3) if preset.startswith("wsl") else create_model(preset)
    channels = model.expected_channels or ("DNA", "ER", "RNA", "AGP", "Mito")
    plan = plan_channels(channels, model.expected_channels)
    rows = np.random.default_rng(1).integers(0, 255, (16, len(channels), 64, 64), dtype=np.uint8)
    last = model.num_blocks
    ref = ModelFeatures(model, plan, [1, last], "mean", device=CPU, dtype=None, batch_size=8)(rows)
    runner = ModelFeatures(model, plan, [1, last], "mean", device=CPU, dtype=torch.bfloat16, batch_size=8)
    fast = runner(rows)
    assert all(p.dtype == torch.bfloat16 for p in runner.model.parameters())  # cast once, whole model
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the caller's model is untouched
    for b in (1, last):
        assert fast[b].dtype == np.float32
        spread = ref[b].std(axis=0).mean()
        assert np.abs(fast[b] - ref[b]).mean() < 0.05 * spread + 1e-6


def test_inference_weights_casts_only_for_cpu_bf16():
    model = create_model("camae_vit_tiny_patch8_64")
    assert inference_weights(model, CPU, None) is model
    assert not model.training
    copy = inference_weights(model, CPU, torch.bfloat16)
    assert copy is not model and next(copy.parameters()).dtype == torch.bfloat16
