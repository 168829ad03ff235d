import json

import pytest
import torch
from typer.testing import CliRunner

from cellmae.models import create_model, list_models, model_summary

from .conftest import uint8_images


def test_cnn_mae_shapes_features_and_channel_check():
    torch.manual_seed(0)
    model = create_model("cnn_mae_tiny_64").eval()
    names = model.expected_channels
    x = uint8_images(2, len(names))
    out = model(x, channels=names, mask_seed=0)
    assert out["pred"].shape == out["target"].shape == (2, 64, 64 * len(names))
    assert int(out["mask"][0].sum()) == 64 - 16
    feats = model.forward_features(x, blocks="all")
    assert [f.shape[1] for f in feats.values()] == model.cfg.widths
    assert model.forward_features(x, blocks=[2])[2].shape == (2, 64)
    with pytest.raises(ValueError, match="expects channels"):
        model(x[:, :3], channels=names[:3])
    with pytest.raises(ValueError, match="pool='mean' only"):
        model.forward_features(x, pool="cls")


def test_wsl_classifier_logits_loss_and_block_features():
    torch.manual_seed(0)
    model = create_model("wsl_tiny_64", num_classes=4)
    names = model.expected_channels
    x = uint8_images(3, len(names))
    out = model(x, channels=names, labels=torch.tensor([0, 1, 3]))
    assert out["logits"].shape == (3, 4) and out["loss"].ndim == 0
    out["loss"].backward()
    feats = model.eval().forward_features(x, blocks="all")
    assert sorted(feats) == list(range(1, model.num_blocks + 1))
    assert feats[model.num_blocks].shape == (3, model.embed_dim)
    # the last block is timm's final feature map, spatially averaged
    from cellmae.models.standardize import self_standardize

    with torch.no_grad():
        manual = model.backbone.forward_features(self_standardize(x)).mean(dim=(2, 3))
    torch.testing.assert_close(feats[model.num_blocks], manual, atol=1e-5, rtol=1e-5)


def test_wsl_per_experiment_normalization():
    torch.manual_seed(0)
    model = create_model("wsl_tiny_64", num_classes=2, experiments=["HUVEC-01", "HUVEC-02"]).train()
    x = uint8_images(8, 6)
    exps = ["HUVEC-01"] * 4 + ["HUVEC-02"] * 3 + ["NEW-03"]
    feats = model(x, experiments=exps)["features"]
    for rows in (slice(0, 4), slice(4, 7)):  # each experiment standardized with its own statistics
        torch.testing.assert_close(feats[rows].mean(0), torch.zeros(feats.shape[1]), atol=1e-4, rtol=0)
    stats = model.experiment_norm.norms
    assert stats[0].num_batches_tracked.item() == 1 and stats[1].num_batches_tracked.item() == 1
    assert not torch.equal(stats[0].running_mean, stats[1].running_mean)
    with pytest.raises(ValueError, match="experiments"):
        model(x)


def test_registry_counts_large_presets_on_meta():
    names = list_models()
    for required in ("camae_vit_tiny_patch8_64", "mae_vit_tiny_patch8_64", "cnn_mae_tiny_64", "wsl_tiny_64",
                     "camae_vit_small_patch16_256", "camae_vit_base_patch16_256", "camae_vit_base_patch8_256",
                     "camae_vit_large_patch16_256", "camae_vit_large_patch8_256", "camae_vit_gigantic_patch8_256"):
        assert required in names
    g = model_summary("camae_vit_gigantic_patch8_256")
    assert 1.8e9 < g["params"] < 2.0e9 and g["num_blocks"] == 48
    s = model_summary("mae_vit_small_patch16_256")
    assert 21e6 < s["encoder_params"] < 23e6  # ViT-S/16 with a 6-channel patch embedding
    b = model_summary("camae_vit_base_patch16_256")
    assert 85e6 < b["encoder_params"] < 86e6 and b["channels"] == "any (<= 11)"
    with pytest.raises(ValueError, match="unknown model"):
        create_model("vit_nonexistent")
    with pytest.raises(ValueError, match="unknown option"):
        create_model("camae_vit_tiny_patch8_64", not_an_option=1)


def test_models_cli_lists_presets():
    from cellmae.cli import app

    result = CliRunner().invoke(app, ["models", "--family", "wsl", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert {r["name"] for r in rows} == set(list_models("wsl"))
    assert all(r["params"] > 0 and r["img_size"] for r in rows)
