import pytest
import torch

from cellmae.models import create_model
from cellmae.models.losses import patchify

from .conftest import NAMES11, SMALL, uint8_images


@pytest.mark.parametrize("num_channels", [1, 3, 5, 6, 11])
def test_camae_shapes_for_any_channel_count(camae, num_channels):
    x = uint8_images(2, num_channels)
    names = NAMES11[:num_channels]
    out = camae(x, channels=names, mask_seed=0)
    length = num_channels * 64
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    assert out["pred"].shape == out["target"].shape == (2, length, 64)
    assert out["mask"].shape == (2, length)
    assert int(out["mask"][0].sum()) == length - int(length * 0.25)
    feats = camae.forward_features(x, channels=names, blocks=[1, 3], pool="mean")
    assert set(feats) == {1, 3} and feats[3].shape == (2, camae.embed_dim)
    cc = camae.forward_features(x, channels=names, blocks=3, pool="channel_concat")[3]
    assert cc.shape == (2, num_channels * camae.embed_dim)
    assert camae.forward_features(x, channels=names, blocks="all", pool="cls")[3].shape == (2, camae.embed_dim)
    rec = camae.reconstruct(x, channels=names, mask_seed=0)
    assert all(v.shape == (2, num_channels, 64, 64) for v in rec.values())


def test_camae_rejects_too_many_channels_and_bad_names(camae):
    with pytest.raises(ValueError, match="at most 11"):
        camae.forward_features(uint8_images(1, 12))
    with pytest.raises(ValueError, match="unique"):
        camae.forward_features(uint8_images(1, 2), channels=("DNA", "DNA"))
    with pytest.raises(ValueError, match="64x64"):
        camae.forward_features(uint8_images(1, 2, size=32))


def test_standard_mae_shapes_and_channel_check(mae_std):
    names = mae_std.expected_channels
    assert names == ("DNA", "ER", "Actin", "RNA", "Mito", "GolgiPM")
    out = mae_std(uint8_images(2, 6), channels=names)
    assert out["pred"].shape == (2, 64, 64 * 6) and out["mask"].shape == (2, 64)
    with pytest.raises(ValueError, match="expects channels"):
        mae_std(uint8_images(2, 5), channels=names[:5])
    with pytest.raises(ValueError, match="expects channels"):
        mae_std(uint8_images(2, 6), channels=names[::-1])


def test_pooled_embedding_is_invariant_to_channel_order(camae):
    x = uint8_images(3, 6, seed=1)
    names = NAMES11[:6]
    perm = [3, 0, 5, 1, 4, 2]
    a = camae.forward_features(x, channels=names, blocks=[2, 3], pool="mean")
    b = camae.forward_features(x[:, perm], channels=[names[i] for i in perm], blocks=[2, 3], pool="mean")
    for k in (2, 3):
        torch.testing.assert_close(a[k], b[k], atol=2e-5, rtol=1e-5)
    # channel-wise concatenation follows the channels: permuting inputs permutes the chunks
    ca = camae.forward_features(x, channels=names, blocks=3, pool="channel_concat")[3].reshape(3, 6, -1)
    cb = camae.forward_features(x[:, perm], channels=None, blocks=3, pool="channel_concat")[3].reshape(3, 6, -1)
    torch.testing.assert_close(ca[:, perm], cb, atol=2e-5, rtol=1e-5)


def test_learned_channel_embeddings_are_keyed_by_name():
    torch.manual_seed(0)
    model = create_model("camae_vit_tiny_patch8_64", **{**SMALL, "depth": 2}, channel_embed_names=list(NAMES11)).eval()
    x = uint8_images(2, 4, seed=2)
    names = NAMES11[:4]
    base = model.forward_features(x, channels=names)[2]
    perm = [2, 0, 3, 1]
    same = model.forward_features(x[:, perm], channels=[names[i] for i in perm])[2]
    torch.testing.assert_close(base, same, atol=2e-5, rtol=1e-5)  # same stains, new order: same embedding
    concat = model.forward_features(x, channels=names, pool="channel_concat")[2]
    relabeled = model.forward_features(x, channels=names[::-1], pool="channel_concat")[2]
    assert (concat - relabeled).abs().max() > 1e-3  # same pixels, other stain names: differs
    with pytest.raises(ValueError, match="unknown channel"):
        model.forward_features(x, channels=("DNA", "ER", "RNA", "Nope"))
    with pytest.raises(ValueError, match="pass channels"):
        model.forward_features(x)


def test_block_features_equal_a_manual_forward(camae):
    x = uint8_images(2, 4, seed=3)
    feats = camae.forward_features(x, blocks=[1, 2], pool="mean")
    with torch.no_grad():
        z = (x.float() / 255.0)
        z = (z - z.mean(dim=(2, 3), keepdim=True)) / (z.var(dim=(2, 3), unbiased=False, keepdim=True) + 1e-5).sqrt()
        w = camae.encoder.tokenizer.patch_embed.proj
        tok = torch.nn.functional.conv2d(z.reshape(8, 1, 64, 64), w.weight, w.bias, stride=8)
        tok = tok.flatten(2).transpose(1, 2) + camae.encoder.tokenizer.pos_embed  # (B*C, 64, D)
        tok = tok.reshape(2, 4 * 64, -1)
        h = torch.cat([camae.encoder.cls_token.expand(2, -1, -1), tok], dim=1)
        manual = {}
        for i in (1, 2):
            h = camae.encoder.blocks[i - 1](h)
            manual[i] = h[:, 1:].mean(1)
    for i in (1, 2):
        torch.testing.assert_close(feats[i], manual[i], atol=1e-5, rtol=1e-5)


def test_forward_features_stops_after_the_deepest_requested_block(camae):
    calls = []
    hooks = [b.register_forward_hook(lambda m, i, o, k=k: calls.append(k)) for k, b in enumerate(camae.encoder.blocks)]
    camae.forward_features(uint8_images(1, 2), blocks=[2])
    for h in hooks:
        h.remove()
    assert calls == [0, 1]
    with pytest.raises(ValueError, match="1..3"):
        camae.forward_features(uint8_images(1, 2), blocks=[4])


@pytest.mark.parametrize("preset", ["camae_vit_tiny_patch8_64", "mae_vit_tiny_patch8_64", "cnn_mae_tiny_64"])
def test_masked_pixels_do_not_leak_into_the_prediction(preset):
    """Shuffling pixel values inside masked patches (which keeps the per-channel statistics the
    self-standardization uses) must not change any prediction."""
    torch.manual_seed(0)
    model = create_model(preset, **({} if preset.startswith("cnn") else SMALL)).eval()
    names = model.expected_channels or NAMES11[:3]
    x = uint8_images(1, len(names), seed=4)
    out = model(x, channels=names, mask_seed=7)
    ca = model.expected_channels is None
    p = model.cfg.patch_size
    idx = torch.arange(x.numel()).reshape(x.shape).float()
    masked_tok = out["mask"][0].bool()
    tok_idx = patchify(idx, p, channel_agnostic=ca)[0][masked_tok].long()  # pixel ids inside masked patches
    per_channel = [] if not ca else [tok_idx.flatten()]
    if not ca:  # keep each channel's histogram: shuffle within a channel only
        hw = x.shape[-1] * x.shape[-2]
        flat = tok_idx.flatten()
        per_channel = [flat[flat // hw == c] for c in range(len(names))]
    y = x.clone().flatten()
    gen = torch.Generator().manual_seed(0)
    for ids in per_channel:
        if ca:  # channel-agnostic tokens are single-channel: shuffle within each channel too
            hw = x.shape[-1] * x.shape[-2]
            for c in range(len(names)):
                sel = ids[ids // hw == c]
                y[sel] = y[sel[torch.randperm(len(sel), generator=gen)]]
        else:
            y[ids] = y[ids[torch.randperm(len(ids), generator=gen)]]
    y = y.reshape(x.shape)
    assert not torch.equal(x, y)
    out2 = model(y, channels=names, mask_seed=7)
    torch.testing.assert_close(out["pred"], out2["pred"], atol=1e-4, rtol=1e-4)


def test_training_step_reduces_loss_and_model_config_is_json():
    import json

    torch.manual_seed(0)
    model = create_model("camae_vit_tiny_patch8_64", **SMALL)
    json.dumps(model.config)
    x = uint8_images(2, 3, seed=5)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        loss = model(x, channels=NAMES11[:3], mask_seed=0)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_bf16_autocast_features_match_fp32(camae):
    x = uint8_images(2, 5, seed=6)
    with torch.no_grad():
        ref = camae.forward_features(x, blocks="all")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = camae.forward_features(x, blocks="all")
    for k in ref:
        assert fast[k].dtype == torch.float32
        assert ((fast[k] - ref[k]).norm() / ref[k].norm()).item() < 1e-2
    assert all(p.dtype == torch.float32 for p in camae.parameters())  # the model itself is untouched


def test_bf16_autocast_training_loss_matches_fp32(camae):
    x = uint8_images(2, 4, seed=8)
    camae.train()
    ref = camae(x, mask_seed=3)["loss"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = camae(x, mask_seed=3)  # decoder residual stream in bf16, encoder standard mixed precision
    out["loss"].backward()
    assert out["loss"].dtype == torch.float32
    assert abs(out["loss"].item() - ref.item()) / ref.item() < 0.02
    assert camae.encoder.blocks[0].in_proj.weight.grad is not None  # gradients reach the encoder
    grads = [p.grad for p in camae.parameters() if p.grad is not None]  # unused channel slots have none
    assert all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
