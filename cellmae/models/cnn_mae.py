"""CNN member of the MAE family: a masked convolutional U-Net (ConvNeXt blocks from timm).

Masking is at patch level as for the ViT MAE (same tokens, same loss): masked patches are replaced by a
learned mask embedding after the stem, and every encoder stage re-zeroes the masked positions of its
output (a dense stand-in for sparse convolution, as in SparK / ConvNeXt-V2's FCMAE) so visible features
cannot be built from masked pixels through the receptive field. A U-Net decoder (transposed-conv
upsampling + skip connections) predicts all pixels; the loss is taken on masked patches only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d
from timm.models.convnext import ConvNeXtBlock
from torch import nn

from cellmae.models.interface import EmbedMixin, check_channels, resolve_blocks
from cellmae.models.losses import mae_loss, patchify, unpatchify
from cellmae.models.masking import random_token_mask
from cellmae.models.standardize import self_standardize


@dataclass
class CNNMAEConfig:
    img_size: int = 64
    patch_size: int = 8  # masking granularity; must be a multiple of the total stride (2 ** len(widths))
    widths: list[int] = dataclasses.field(default_factory=lambda: [32, 64, 128, 256])
    blocks_per_stage: int = 1
    channels: list[str] | None = None
    mask_ratio: float = 0.75
    norm_pix_loss: bool = False
    fourier_weight: float = 0.01
    drop_path_rate: float = 0.0
    family: str = "cnn_mae"

    def __post_init__(self) -> None:
        if not self.channels:
            raise ValueError("a CNN MAE needs channels=[names...] (a fixed channel set)")
        stride = 2 ** len(self.widths)
        if self.patch_size % stride or self.img_size % self.patch_size:
            raise ValueError(
                f"patch_size {self.patch_size} must be a multiple of the total stride {stride} "
                f"and divide img_size {self.img_size}"
            )
        self.channels, self.widths = list(self.channels), list(self.widths)


class _UpBlock(nn.Module):
    """Upsample x2, concatenate the skip, fuse with a 1x1 conv and a ConvNeXt block."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, out_ch, kernel_size=2, stride=2)
        self.fuse = nn.Conv2d(out_ch + skip_ch, out_ch, kernel_size=1)
        self.block = ConvNeXtBlock(out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(self.fuse(torch.cat([self.up(x), skip], dim=1)))


class CNNMaskedAutoencoder(EmbedMixin, nn.Module):
    def __init__(self, config: CNNMAEConfig):
        super().__init__()
        self.cfg = c = config
        w = c.widths
        self.stem = nn.Sequential(nn.Conv2d(len(c.channels), w[0], kernel_size=2, stride=2), LayerNorm2d(w[0]))
        self.mask_token = nn.Parameter(torch.zeros(1, w[0], 1, 1))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        total = len(w) * c.blocks_per_stage
        dpr = [c.drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        self.stages = nn.ModuleList()
        for i, width in enumerate(w):
            down = nn.Identity() if i == 0 else nn.Sequential(
                LayerNorm2d(w[i - 1]), nn.Conv2d(w[i - 1], width, kernel_size=2, stride=2)
            )
            blocks = [ConvNeXtBlock(width, drop_path=dpr[i * c.blocks_per_stage + j]) for j in range(c.blocks_per_stage)]
            self.stages.append(nn.Sequential(down, *blocks))
        self.ups = nn.ModuleList(_UpBlock(w[i], w[i - 1], w[i - 1]) for i in range(len(w) - 1, 0, -1))
        # back to full resolution (the stem's stride 2) and to pixels
        self.head = nn.Conv2d(w[0], len(c.channels) * 4, kernel_size=1)

    @property
    def config(self) -> dict:
        return dataclasses.asdict(self.cfg)

    @property
    def num_blocks(self) -> int:
        return len(self.cfg.widths)

    @property
    def embed_dim(self) -> int:
        return self.cfg.widths[-1]

    @property
    def expected_channels(self) -> tuple[str, ...]:
        return tuple(self.cfg.channels)

    def _standardize_checked(self, images: torch.Tensor, channels: Sequence[str] | None) -> torch.Tensor:
        check_channels(self.expected_channels, channels, images.shape[1])
        if images.shape[-2:] != (self.cfg.img_size, self.cfg.img_size):
            raise ValueError(f"model expects {self.cfg.img_size}x{self.cfg.img_size} crops, got {tuple(images.shape[-2:])}")
        return self_standardize(images)

    def _encode(self, x: torch.Tensor, visible: torch.Tensor | None, stop_after: int | None = None) -> list[torch.Tensor]:
        """Stage outputs; ``visible`` (B, 1, h, w) patch-grid visibility (1 = visible) or None."""
        h = self.stem(x)
        if visible is not None:
            vis = F.interpolate(visible, size=h.shape[-2:], mode="nearest")
            h = h * vis + self.mask_token.to(h.dtype) * (1 - vis)
        feats = []
        for i, stage in enumerate(self.stages, start=1):
            h = stage(h)
            if visible is not None:
                # re-zero masked positions (keep mask embeddings out after the first stage mixes them)
                h = h * F.interpolate(visible, size=h.shape[-2:], mode="nearest")
            feats.append(h)
            if stop_after is not None and i >= stop_after:
                break
        return feats

    def forward(
        self,
        images: torch.Tensor,
        channels: Sequence[str] | None = None,
        mask_ratio: float | None = None,
        mask_seed: int | None = None,
    ) -> dict[str, torch.Tensor]:
        ratio = self.cfg.mask_ratio if mask_ratio is None else mask_ratio
        x = self._standardize_checked(images, channels)
        b, g = x.shape[0], self.cfg.img_size // self.cfg.patch_size
        m = random_token_mask(b, g * g, ratio, device=x.device, seed=mask_seed)
        visible = (1 - m.mask).reshape(b, 1, g, g).to(x.dtype)
        x_in = x * F.interpolate(visible, size=x.shape[-2:], mode="nearest")  # masked pixels never enter
        feats = self._encode(x_in, visible)
        h = feats[-1]
        for up, skip in zip(self.ups, reversed(feats[:-1]), strict=True):
            h = up(h, skip)
        recon = F.pixel_shuffle(self.head(h), 2)
        pred = patchify(recon, self.cfg.patch_size, channel_agnostic=False)
        target = patchify(x, self.cfg.patch_size, channel_agnostic=False)
        losses = mae_loss(pred, target, m.mask, patch_size=self.cfg.patch_size, norm_pix=self.cfg.norm_pix_loss,
                          fourier_weight=self.cfg.fourier_weight)
        return {**losses, "pred": pred, "target": target, "mask": m.mask}

    def forward_features(
        self,
        images: torch.Tensor,
        channels: Sequence[str] | None = None,
        blocks: Iterable[int] | int | str = "last",
        pool: str = "mean",
    ) -> dict[int, torch.Tensor]:
        """{stage (1-based): (B, width) spatial mean}; 'blocks' are the encoder stages here."""
        if pool != "mean":
            raise ValueError(f"a CNN encoder supports pool='mean' only, got {pool!r}")
        wanted = resolve_blocks(blocks, self.num_blocks)
        x = self._standardize_checked(images, channels)
        feats = self._encode(x, None, stop_after=wanted[-1])
        return {i: feats[i - 1].mean(dim=(2, 3)).float() for i in wanted}

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, channels: Sequence[str] | None = None, mask_seed: int | None = 0,
                    mask_ratio: float | None = None) -> dict[str, torch.Tensor]:
        was_training = self.training
        self.eval()  # no drop-path noise in figures
        try:
            out = self.forward(images, channels=channels, mask_ratio=mask_ratio, mask_seed=mask_seed)
        finally:
            self.train(was_training)
        c, p = images.shape[1], self.cfg.patch_size
        target, pred = out["target"].float(), out["pred"].float()
        if self.cfg.norm_pix_loss:
            mean, std = target.mean(-1, keepdim=True), (target.var(-1, keepdim=True, unbiased=False) + 1e-6) ** 0.5
            pred = pred * std + mean
        mask = out["mask"].unsqueeze(-1).float()

        def img(t: torch.Tensor) -> torch.Tensor:
            return unpatchify(t, p, c, channel_agnostic=False)

        return {"input": img(target), "masked": img(target * (1 - mask)), "reconstruction": img(pred),
                "composite": img(target * (1 - mask) + pred * mask), "mask": img(mask.expand_as(target))}
