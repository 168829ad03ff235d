"""The masked autoencoder: ViT encoder (standard or channel-agnostic tokenizer) + MAE or CA-MAE decoder.

Only the visible tokens go through the encoder (gathered, not masked), so encoder compute scales with
1 - mask_ratio. Images are self-standardized inside; callers pass raw uint8 crops.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from cellmae.models.decoders import CAMAEDecoder, MAEDecoder
from cellmae.models.interface import EmbedMixin
from cellmae.models.losses import mae_loss, patchify, unpatchify
from cellmae.models.masking import gather_tokens, random_token_mask
from cellmae.models.standardize import self_standardize
from cellmae.models.vit import ViTEncoder


@dataclass
class MAEConfig:
    """Everything needed to rebuild a (CA-)MAE; JSON-serialisable via ``dataclasses.asdict``."""

    tokenizer: str = "channel_agnostic"  # or "standard"
    img_size: int = 64
    patch_size: int = 8
    embed_dim: int = 192
    depth: int = 12
    num_heads: int = 3
    mlp_ratio: float = 4.0
    block: str = "standard"  # or "parallel" (timm ParallelScalingBlock)
    qkv_bias: bool = True
    qk_norm: bool = False
    init_values: float | None = None  # LayerScale init; None = no LayerScale
    drop_path_rate: float = 0.0
    class_token: bool = True
    final_norm: bool = True
    channels: list[str] | None = None  # fixed channel names (standard tokenizer)
    max_channels: int = 11  # channel-agnostic capacity
    channel_embed_names: list[str] | None = None  # learned channel embeddings keyed by name (CA only)
    decoder: str = "camae"  # or "mae"
    decoder_embed_dim: int = 128
    decoder_depth: int = 2
    decoder_num_heads: int = 4
    decoder_channel_slots: int = 11  # CA decoder: channel query tokens (by position)
    decoder_separate_channel_blocks: bool = False
    mask_ratio: float = 0.75
    norm_pix_loss: bool = False
    fourier_weight: float = 0.01
    family: str = field(default="mae", repr=False)

    def __post_init__(self) -> None:
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if self.tokenizer == "standard" and not self.channels:
            raise ValueError("tokenizer='standard' needs channels=[names...] (a fixed channel set)")
        if self.decoder == "camae" and self.tokenizer != "channel_agnostic":
            raise ValueError("decoder='camae' needs tokenizer='channel_agnostic'")
        if self.decoder not in ("mae", "camae"):
            raise ValueError(f"unknown decoder {self.decoder!r}; expected 'mae' or 'camae'")
        if self.channels is not None:
            self.channels = list(self.channels)


class MaskedAutoencoder(EmbedMixin, nn.Module):
    """MAE / CA-MAE. ``model(images, channels=..., mask_ratio=..., mask_seed=...)`` -> dict with the loss."""

    def __init__(self, config: MAEConfig):
        super().__init__()
        self.cfg = config
        c = config
        self.encoder = ViTEncoder(
            tokenizer=c.tokenizer, img_size=c.img_size, patch_size=c.patch_size, embed_dim=c.embed_dim,
            depth=c.depth, num_heads=c.num_heads, mlp_ratio=c.mlp_ratio, block=c.block, qkv_bias=c.qkv_bias,
            qk_norm=c.qk_norm, init_values=c.init_values, drop_path_rate=c.drop_path_rate,
            class_token=c.class_token, final_norm=c.final_norm, channels=c.channels,
            max_channels=c.max_channels, channel_embed_names=c.channel_embed_names,
        )
        self.channel_agnostic = c.tokenizer == "channel_agnostic"
        grid = c.img_size // c.patch_size
        self.encoder_decoder_proj = nn.Linear(c.embed_dim, c.decoder_embed_dim)
        if c.decoder == "camae":
            self.decoder = CAMAEDecoder(
                embed_dim=c.decoder_embed_dim, depth=c.decoder_depth, num_heads=c.decoder_num_heads, grid=grid,
                num_channel_slots=c.decoder_channel_slots, separate_channel_blocks=c.decoder_separate_channel_blocks,
                mlp_ratio=c.mlp_ratio,
            )
        else:
            self.decoder = MAEDecoder(
                embed_dim=c.decoder_embed_dim, depth=c.decoder_depth, num_heads=c.decoder_num_heads, grid=grid,
                mlp_ratio=c.mlp_ratio, num_prefix_tokens=self.encoder.num_prefix_tokens,
            )
        out_per_token = c.patch_size**2 * (1 if self.channel_agnostic else len(c.channels or ()))
        self.decoder_pred = nn.Linear(c.decoder_embed_dim, out_per_token)
        self.apply(_init_linear_and_norm)

    # --- contract properties -------------------------------------------------------------
    @property
    def config(self) -> dict:
        return dataclasses.asdict(self.cfg)

    @property
    def num_blocks(self) -> int:
        return self.cfg.depth

    @property
    def embed_dim(self) -> int:
        return self.cfg.embed_dim

    @property
    def expected_channels(self) -> tuple[str, ...] | None:
        return None if self.channel_agnostic else tuple(self.cfg.channels or ())

    @property
    def patch_size(self) -> int:
        return self.cfg.patch_size

    # --- forward passes ------------------------------------------------------------------
    def forward(
        self,
        images: torch.Tensor,
        channels: Sequence[str] | None = None,
        mask_ratio: float | None = None,
        mask_seed: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """Masked reconstruction. Returns loss (scalar), mse, fourier, pred/target (B, L, p*p[*C]), mask (B, L)
        and latent (B, prefix + visible, D): the encoder output of the visible tokens."""
        ratio = self.cfg.mask_ratio if mask_ratio is None else mask_ratio
        x = self_standardize(images)
        tokens = self.encoder.tokenize(x, channels)
        b, length, _ = tokens.shape
        m = random_token_mask(b, length, ratio, device=tokens.device, seed=mask_seed)
        latent = self.encoder(gather_tokens(tokens, m.ids_keep))  # (B, prefix + visible, D)
        projected = self.encoder_decoder_proj(latent)
        p = self.encoder.num_prefix_tokens
        prefix, visible = projected[:, :p], projected[:, p:]
        mask_tokens = self.decoder.mask_token.to(visible.dtype).expand(b, length - visible.shape[1], -1)
        full = gather_tokens(torch.cat([visible, mask_tokens], dim=1), m.ids_restore)  # unshuffle
        num_channels = x.shape[1]
        pred = self.decoder_pred(self.decoder(prefix, full, num_channels))
        target = patchify(x, self.cfg.patch_size, channel_agnostic=self.channel_agnostic)
        losses = mae_loss(
            pred, target, m.mask, patch_size=self.cfg.patch_size, norm_pix=self.cfg.norm_pix_loss,
            fourier_weight=self.cfg.fourier_weight,
        )
        return {**losses, "pred": pred, "target": target, "mask": m.mask, "latent": latent}

    def forward_features(
        self,
        images: torch.Tensor,
        channels: Sequence[str] | None = None,
        blocks: Iterable[int] | int | str = "last",
        pool: str = "mean",
    ) -> dict[int, torch.Tensor]:
        """{block (1-based): (B, D) pooled features} without masking; stops after the deepest block asked."""
        x = self_standardize(images)
        tokens = self.encoder.tokenize(x, channels)
        feats = self.encoder.block_features(tokens, blocks, pool, self.encoder.tokenizer.token_channels(x.shape[1]))
        return {k: v.float() for k, v in feats.items()}

    @torch.no_grad()
    def reconstruct(
        self,
        images: torch.Tensor,
        channels: Sequence[str] | None = None,
        mask_seed: int | None = 0,
        mask_ratio: float | None = None,
    ) -> dict[str, torch.Tensor]:
        """For figures: standardized input, input with masked patches zeroed, reconstruction, and the
        composite (visible input + predicted masked patches), all (B, C, H, W) float32. Runs in eval
        mode (no drop-path noise in figures) and restores the previous mode."""
        was_training = self.training
        self.eval()
        try:
            out = self.forward(images, channels=channels, mask_ratio=mask_ratio, mask_seed=mask_seed)
        finally:
            self.train(was_training)
        c = images.shape[1]
        p, ca = self.cfg.patch_size, self.channel_agnostic
        target, pred = out["target"].float(), out["pred"].float()
        if self.cfg.norm_pix_loss:  # undo the per-patch normalization with the target's statistics
            mean, std = target.mean(-1, keepdim=True), (target.var(-1, keepdim=True, unbiased=False) + 1e-6) ** 0.5
            pred = pred * std + mean
        mask = out["mask"].unsqueeze(-1).float()

        def img(t: torch.Tensor) -> torch.Tensor:
            return unpatchify(t, p, c, channel_agnostic=ca)

        return {
            "input": img(target),
            "masked": img(target * (1 - mask)),
            "reconstruction": img(pred),
            "composite": img(target * (1 - mask) + pred * mask),
            "mask": img(mask.expand_as(target)),
        }


def _init_linear_and_norm(m: nn.Module) -> None:
    """MAE's initialisation: xavier-uniform linears, zero biases, unit LayerNorms."""
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
