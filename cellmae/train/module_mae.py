"""MAE / CA-MAE / CNN-MAE pretraining: the model computes its own masked-reconstruction loss."""

from __future__ import annotations

from typing import Any

import torch

from cellmae.train.module_base import TrainModule, images_and_channels


class MAEPretrainModule(TrainModule):
    """``loss = model(images, channels=..., mask_ratio=..., mask_seed=...)["loss"]``.

    The mask seed is the step seed, so masks are reproducible per (seed, batch, rank) and a resumed run
    sees the very masks an uninterrupted one would. Any other scalar the model returns (``mse``,
    ``fourier``) is logged next to the loss.
    """

    def compute_loss(self, batch: dict[str, Any], seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images, channels = images_and_channels(batch)
        out = self.model(images, channels=channels, mask_ratio=self.cfg.model.mask_ratio, mask_seed=seed)
        extra = {k: v.detach() for k, v in out.items()
                 if k != "loss" and isinstance(v, torch.Tensor) and v.ndim == 0}
        return out["loss"], extra
