"""The OpenPhenom loader on checkpoints written here in the public maes_microscopy layout."""

import pickle

import pytest
import torch

from cellmae.models import create_model, load_openphenom

from .conftest import NAMES11, SMALL, uint8_images

# the OpenPhenom architecture, narrowed: parallel blocks, no final norm, one decoder stack per slot
TINY_PHENOM = {**SMALL, "final_norm": False, "decoder_channel_slots": 3, "decoder_separate_channel_blocks": True}
BLOCK_KEYS = {
    "in_norm.weight", "in_norm.bias", "in_proj.weight", "mlp_bias", "q_norm.weight", "q_norm.bias",
    "k_norm.weight", "k_norm.bias", "attn_out_proj.weight", "attn_out_proj.bias",
    "mlp_out_proj.weight", "mlp_out_proj.bias", "ls.gamma",
}


def reference_sincos(dim: int, grid: int, channels: int) -> torch.Tensor:
    """maes_microscopy's generate_2d_sincos_pos_embeddings, re-typed: (1, 1 + channels*grid^2, dim)."""
    pos = torch.arange(grid, dtype=torch.float32)
    hh, ww = torch.meshgrid(pos, pos, indexing="ij")
    quarter = dim // 4
    freq = 1.0 / (10000.0 ** (torch.arange(quarter, dtype=torch.float32) / quarter))
    h, w = torch.outer(hh.flatten(), freq), torch.outer(ww.flatten(), freq)
    table = torch.cat([torch.sin(h), torch.cos(h), torch.sin(w), torch.cos(w)], dim=1)[None].repeat(1, channels, 1)
    return torch.cat([torch.zeros(1, 1, dim), table], dim=1)


def openphenom_layout(model: torch.nn.Module, *, encoder_channels: int = 11) -> dict[str, torch.Tensor]:
    """Our weights renamed into the published layout, plus the tensors that file carries besides."""
    cfg = model.config
    grid = cfg["img_size"] // cfg["patch_size"]
    out = {}
    for key, value in model.state_dict().items():
        if key.startswith("encoder.tokenizer.patch_embed."):
            key = "encoder.vit_backbone." + key[len("encoder.tokenizer.") :]
        elif key.startswith("encoder."):
            key = "encoder.vit_backbone." + key[len("encoder.") :]
        out[key] = value.clone()
    d, dd = cfg["embed_dim"], cfg["decoder_embed_dim"]
    out["encoder.vit_backbone.pos_embed"] = reference_sincos(d, grid, encoder_channels)
    out["encoder.vit_backbone.fc_norm.weight"] = torch.ones(d)
    out["encoder.vit_backbone.fc_norm.bias"] = torch.zeros(d)
    out["decoder.pos_embeddings"] = reference_sincos(dd, grid, cfg["decoder_channel_slots"])
    out["decoder.placeholder"] = torch.zeros(1, 1, dd)
    return out


def test_public_openphenom_key_layout_and_shapes():
    """The real preset, on the meta device, renames into exactly the published key layout."""
    with torch.device("meta"):
        model = create_model("camae_vit_small_patch16_256")
        state = openphenom_layout(model)
    assert state["encoder.vit_backbone.pos_embed"].shape == (1, 1 + 11 * 256, 384)
    assert state["encoder.vit_backbone.patch_embed.proj.weight"].shape == (384, 1, 16, 16)
    assert state["encoder.vit_backbone.cls_token"].shape == (1, 1, 384)
    block0 = {k[len("encoder.vit_backbone.blocks.0.") :] for k in state if k.startswith("encoder.vit_backbone.blocks.0.")}
    assert block0 == BLOCK_KEYS  # no qkv bias; fused in_proj = [mlp-in | q | k | v]
    assert state["encoder.vit_backbone.blocks.0.in_proj.weight"].shape == (4 * 384 + 3 * 384, 384)
    assert state["encoder.vit_backbone.blocks.0.mlp_bias"].shape == (4 * 384,)
    assert state["encoder.vit_backbone.blocks.0.q_norm.weight"].shape == (64,)
    assert not any(k.startswith("encoder.vit_backbone.blocks.12.") for k in state)
    assert not any(k.startswith("encoder.vit_backbone.norm.") for k in state)  # no final norm
    enc = sum(v.numel() for k, v in state.items() if k.startswith("encoder."))
    assert 22.4e6 < enc < 22.6e6  # the published 22.5M encoder (incl. the 11-channel position table)
    assert state["decoder.decoders.5.7.attn.qkv.weight"].shape == (3 * 512, 512)
    assert "decoder.decoders.6.0.norm1.weight" not in state
    assert state["decoder.modality_tokens.5"].shape == (1, 1, 512)
    assert state["decoder.cross_attention.kv.weight"].shape == (1024, 512)
    assert state["encoder_decoder_proj.weight"].shape == (512, 384)
    assert state["decoder_pred.weight"].shape == (256, 512)


@pytest.fixture
def phenom_file(tmp_path):
    torch.manual_seed(0)
    source = create_model("camae_vit_tiny_patch8_64", **TINY_PHENOM).eval()
    path = tmp_path / "phenom.ckpt"
    torch.save({"state_dict": openphenom_layout(source)}, path)
    return source, path


def test_loader_reproduces_the_source_model(phenom_file):
    source, path = phenom_file
    model = load_openphenom(path, preset="camae_vit_tiny_patch8_64", **TINY_PHENOM).eval()
    x = uint8_images(2, 3)
    a = source.forward_features(x, blocks="all")
    b = model.forward_features(x, blocks="all")
    assert all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = source(x, mask_seed=0), model(x, mask_seed=0)
    assert torch.equal(ra["pred"], rb["pred"])
    # the published embedding: mean of last-block patch tokens, no final norm
    assert isinstance(model.encoder.norm, torch.nn.Identity)
    assert model.forward_features(x, channels=NAMES11[:3], blocks=3)[3].shape == (2, SMALL["embed_dim"])


def test_loader_lists_wrong_shapes_and_missing_keys(phenom_file, tmp_path):
    source, _ = phenom_file
    state = openphenom_layout(source)
    state["encoder.vit_backbone.blocks.1.in_proj.weight"] = torch.zeros(7, 7)
    del state["decoder.cross_attention.q.weight"]
    del state["decoder_pred.bias"]
    state["decoder.something_new"] = torch.zeros(2)
    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": state}, bad)
    with pytest.raises(ValueError) as err:
        load_openphenom(bad, preset="camae_vit_tiny_patch8_64", **TINY_PHENOM)
    msg = str(err.value)
    assert "missing keys (2)" in msg and "decoder.cross_attention.q.weight" in msg and "decoder_pred.bias" in msg
    assert "unexpected keys (1)" in msg and "decoder.something_new" in msg
    assert "encoder.blocks.1.in_proj.weight: checkpoint (7, 7)" in msg


def test_loader_checks_the_fixed_position_table_and_required_keys(phenom_file, tmp_path):
    source, _ = phenom_file
    state = openphenom_layout(source)
    state["encoder.vit_backbone.pos_embed"] = state["encoder.vit_backbone.pos_embed"] + 0.5
    path = tmp_path / "pos.ckpt"
    torch.save({"state_dict": state}, path)
    with pytest.raises(ValueError, match="pos_embed.*sin-cos"):
        load_openphenom(path, preset="camae_vit_tiny_patch8_64", **TINY_PHENOM)
    del state["decoder.placeholder"]
    torch.save({"state_dict": state}, path)
    with pytest.raises(ValueError, match="decoder.placeholder"):
        load_openphenom(path, preset="camae_vit_tiny_patch8_64", **TINY_PHENOM)


class _Payload:
    """Any non-tensor object: weights_only=True must refuse to unpickle it."""


def test_loader_never_unpickles_code(phenom_file, tmp_path):
    source, _ = phenom_file
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": openphenom_layout(source), "hook": _Payload()}, path)
    with pytest.raises(ValueError, match="refuses to load.*_Payload") as info:
        load_openphenom(path, preset="camae_vit_tiny_patch8_64", **TINY_PHENOM)
    assert "weights_only" not in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value.__cause__, pickle.UnpicklingError)  # refused by torch's weights-only unpickler
