import pytest
import torch

from cellmae.models.losses import fourier_per_token, mae_loss, normalize_patches, patchify, unpatchify
from cellmae.models.masking import num_visible_tokens, random_token_mask
from cellmae.models.standardize import self_standardize


def test_perfect_reconstruction_has_zero_loss_and_noise_positive_loss():
    torch.manual_seed(0)
    target = torch.randn(2, 10, 64)
    mask = random_token_mask(2, 10, 0.5, seed=1).mask
    perfect = mae_loss(target.clone(), target, mask, patch_size=8, fourier_weight=0.01)
    assert perfect["loss"].item() == 0.0 and perfect["fourier"].item() == 0.0
    noisy = mae_loss(target + 0.1 * torch.randn_like(target), target, mask, patch_size=8)
    assert noisy["loss"].item() > 0 and noisy["mse"].item() > 0


def test_loss_ignores_visible_tokens():
    target = torch.zeros(1, 4, 4)
    mask = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    pred = torch.zeros(1, 4, 4)
    pred[0, 1] = 5.0  # error only on a visible token
    pred[0, 3] = -5.0
    assert mae_loss(pred, target, mask, patch_size=2)["loss"].item() == 0.0
    pred[0, 0] = 1.0  # masked token 0 off by 1 everywhere -> mean over 2 masked tokens = 0.5
    assert mae_loss(pred, target, mask, patch_size=2, fourier_weight=0.0)["loss"].item() == pytest.approx(0.5)


def test_fourier_loss_known_values():
    p = 4
    a = 3.0
    # constant patch a vs zeros: |FFT2| is a*p*p at DC and 0 elsewhere -> mean L1 over p*p bins = a
    pred = torch.full((1, 1, p * p), a)
    target = torch.zeros(1, 1, p * p)
    assert fourier_per_token(pred, target, p).item() == pytest.approx(a)
    # a circular shift keeps |FFT2| exactly: Fourier loss 0 while MSE is not
    img = torch.arange(p * p, dtype=torch.float32).reshape(p, p)
    shifted = torch.roll(img, shifts=(1, 2), dims=(0, 1))
    f = fourier_per_token(shifted.reshape(1, 1, -1), img.reshape(1, 1, -1), p)
    assert f.item() == pytest.approx(0.0, abs=1e-4)
    mask = torch.ones(1, 1)
    out = mae_loss(shifted.reshape(1, 1, -1), img.reshape(1, 1, -1), mask, patch_size=p, fourier_weight=0.25)
    assert out["loss"].item() == pytest.approx(0.75 * out["mse"].item() + 0.25 * out["fourier"].item(), rel=1e-6)
    assert out["mse"].item() > 0


def test_norm_pix_targets_are_standardized_per_token():
    t = normalize_patches(torch.randn(2, 5, 16) * 7 + 3)
    assert torch.allclose(t.mean(-1), torch.zeros(2, 5), atol=1e-5)
    assert torch.allclose(t.std(-1, unbiased=False), torch.ones(2, 5), atol=1e-4)


@pytest.mark.parametrize("channel_agnostic", [True, False])
def test_patchify_round_trip_and_token_order(channel_agnostic):
    x = torch.randn(2, 3, 16, 16)
    tokens = patchify(x, 8, channel_agnostic=channel_agnostic)
    assert tokens.shape == ((2, 12, 64) if channel_agnostic else (2, 4, 192))
    assert torch.equal(unpatchify(tokens, 8, 3, channel_agnostic=channel_agnostic), x)
    if channel_agnostic:  # channel-major: token 4 is channel 1's top-left patch
        assert torch.equal(tokens[0, 4], x[0, 1, :8, :8].reshape(-1))


def test_masking_exact_ratio_and_reproducible():
    for length, ratio in [(64, 0.75), (320, 0.75), (100, 0.6), (7, 0.5)]:
        m = random_token_mask(3, length, ratio, seed=5)
        keep = num_visible_tokens(length, ratio)
        assert torch.all(m.mask.sum(1) == length - keep)
        assert m.ids_keep.shape == (3, keep)
        assert torch.all(torch.gather(m.mask, 1, m.ids_keep) == 0)  # kept ids are exactly the visible ones
    a, b = random_token_mask(4, 64, 0.75, seed=3), random_token_mask(4, 64, 0.75, seed=3)
    assert torch.equal(a.mask, b.mask) and torch.equal(a.ids_restore, b.ids_restore)
    assert not torch.equal(a.mask, random_token_mask(4, 64, 0.75, seed=4).mask)
    with pytest.raises(ValueError, match="mask_ratio"):
        random_token_mask(1, 10, 1.0)


def test_self_standardize_per_image_and_channel():
    x = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    x[1, 2] = x[1, 2] // 4  # a dim channel is rescaled like the others
    z = self_standardize(x)
    assert z.dtype == torch.float32
    assert torch.allclose(z.mean(dim=(2, 3)), torch.zeros(2, 3), atol=1e-5)
    raw_var = (x.float() / 255.0).var(dim=(2, 3), unbiased=False)  # eps=1e-5 acts on the [0, 1] scale
    assert torch.allclose(z.var(dim=(2, 3), unbiased=False), raw_var / (raw_var + 1e-5), atol=1e-5)
    assert torch.allclose(self_standardize(x.float() / 255.0), z, atol=1e-6)
    with pytest.raises(ValueError, match="B, C, H, W"):
        self_standardize(x[0])
