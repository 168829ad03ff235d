"""Model sources (timm baseline, errors) and the ``cellmae embed`` command."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cellmae.cli import app
from cellmae.data.schema import CELLPAINTING_CHANNELS, feature_columns
from cellmae.embed import embed_screen, read_embeddings
from cellmae.embed.sources import resolve_source
from cellmae.models.timm_backbone import TimmFeatureModel

from .conftest import write_rxrx_screen


def test_timm_backbone_adapts_to_channels_and_gives_every_block(small_screen, tmp_path):
    paths = embed_screen(small_screen, "timm:resnet18", tmp_path / "resnet18", blocks="all",
                         num_workers=0, progress=False, precision="fp32")
    assert sorted(paths) == [1, 2, 3, 4, 5]
    dims = [len(feature_columns(read_embeddings(paths[b]))) for b in (1, 5)]
    assert dims == [64, 512]


def test_timm_backbone_sees_the_pixels_our_models_see_and_reads_last():
    from cellmae.models.standardize import self_standardize

    torch.manual_seed(0)
    model = TimmFeatureModel("resnet18", CELLPAINTING_CHANNELS, tile=32).eval()
    x = torch.randint(0, 256, (2, 5, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        feats = model.forward_features(x, channels=CELLPAINTING_CHANNELS, blocks="last")
        (fmap,) = model.backbone.forward_intermediates(self_standardize(x), indices=[4], intermediates_only=True)
    assert list(feats) == [5]  # "last" is the deepest feature stage
    torch.testing.assert_close(feats[5], fmap.mean(dim=(-2, -1)))
    with pytest.raises(ValueError, match="expects channels"):
        model.forward_features(x[:, :4], channels=CELLPAINTING_CHANNELS[:4])


def test_timm_local_weights_are_loaded_and_adapted(tmp_path):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    rgb = timm.create_model("resnet18", pretrained=False, num_classes=0)
    weights = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in rgb.state_dict().items()}, str(weights))
    model = TimmFeatureModel("resnet18", CELLPAINTING_CHANNELS, tile=64, weights=weights)
    w5 = model.backbone.conv1.weight
    assert w5.shape[1] == 5
    # timm repeats the RGB filters over the new channels and rescales by 3 / in_chans
    np.testing.assert_allclose(w5[:, :3].detach().numpy() * 5 / 3, rgb.conv1.weight.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(model.backbone.layer4[0].conv1.weight.detach().numpy(),
                                  rgb.layer4[0].conv1.weight.detach().numpy())


def test_source_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="neither a checkpoint path nor a known name"):
        resolve_source("not_a_model_anywhere", screen_channels=("DNA",))
    with pytest.raises(ValueError, match="unknown preset"):
        resolve_source("random-init:no_such_preset")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_source(f"openphenom:{tmp_path / 'missing.pth'}")
    model = TimmFeatureModel("resnet18", ("DNA", "ER"), tile=64)
    with pytest.raises(ValueError, match="CLS token"):
        model.forward_features(torch.zeros(1, 2, 64, 64, dtype=torch.uint8), blocks=[1], pool="cls")


def test_cli_help_and_errors(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["embed", "--help"], env={"COLUMNS": "200"})  # rich fits help to the width
    assert res.exit_code == 0 and "--blocks" in res.output and "handcrafted" in res.output
    screen = write_rxrx_screen(tmp_path / "cp", CELLPAINTING_CHANNELS, plates=1, wells=2, size=64)
    res = runner.invoke(app, ["embed", str(screen), "--model", "random-init:mae_vit_tiny_patch8_64",
                              "--out", str(tmp_path / "out")])
    assert res.exit_code == 2
    assert "expects channels" in res.output and "AGP" in res.output and "GolgiPM" in res.output


def test_cli_handcrafted_run_prints_summary(tmp_path):
    screen = write_rxrx_screen(tmp_path / "s", plates=1, wells=2, sites=1, size=64)
    out = tmp_path / "embed" / "handcrafted"
    res = CliRunner().invoke(app, ["embed", str(screen), "--model", "handcrafted", "--out", str(out), "--num-workers", "0"])
    assert res.exit_code == 0, res.output
    assert "embedded 2 wells" in res.output and "wells/s" in res.output and str(out / "block00") in res.output
    assert len(read_embeddings(out / "block00")) == 2
