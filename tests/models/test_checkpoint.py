import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from cellmae.models import create_model, from_pretrained, save_pretrained

from .conftest import NAMES11, SMALL, uint8_images


@pytest.mark.parametrize(
    "preset,overrides",
    [
        ("camae_vit_tiny_patch8_64", {**SMALL, "channel_embed_names": list(NAMES11[:4])}),
        ("mae_vit_tiny_patch8_64", SMALL),
        ("cnn_mae_tiny_64", {}),
        ("wsl_tiny_64", {"num_classes": 3, "experiments": ["e1", "e2"]}),
    ],
)
def test_round_trip_is_bit_exact(tmp_path, preset, overrides):
    torch.manual_seed(0)
    model = create_model(preset, **overrides).eval()
    out_dir = save_pretrained(model, tmp_path / "ckpt")
    assert sorted(p.name for p in out_dir.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    meta = json.loads((out_dir / "config.json").read_text())
    assert meta["preset"] == preset and meta["config"] == model.config
    loaded = from_pretrained(out_dir).eval()
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    names = model.expected_channels or NAMES11[:4]
    x = uint8_images(2, len(names))
    fa = model.forward_features(x, channels=names, blocks="all")
    fb = loaded.forward_features(x, channels=names, blocks="all")
    assert all(torch.equal(fa[k], fb[k]) for k in fa)


def test_from_pretrained_reports_mismatched_keys(tmp_path):
    model = create_model("camae_vit_tiny_patch8_64", **SMALL)
    out_dir = save_pretrained(model, tmp_path / "ckpt")
    state = load_file(str(out_dir / "model.safetensors"))
    state.pop("decoder.mask_token")
    state["encoder.cls_token"] = torch.zeros(1, 1, 7)
    state["extra.weight"] = torch.zeros(1)
    save_file(state, str(out_dir / "model.safetensors"))
    with pytest.raises(ValueError) as err:
        from_pretrained(out_dir)
    msg = str(err.value)
    assert "decoder.mask_token" in msg and "extra.weight" in msg and "encoder.cls_token" in msg


def test_save_is_atomic_and_overwrites(tmp_path):
    model = create_model("cnn_mae_tiny_64")
    target = tmp_path / "ckpt"
    save_pretrained(model, target)
    with pytest.raises(AttributeError):
        save_pretrained(object(), target)  # type: ignore[arg-type]  # fails before anything is written
    assert from_pretrained(target) is not None
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    with pytest.raises(FileNotFoundError, match="config.json"):
        from_pretrained(tmp_path / "nowhere")
