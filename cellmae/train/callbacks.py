"""Lightning callbacks: per-step metrics CSV with throughput, run-level ETA in the progress bar,
reconstruction figures.

Checkpointing itself is Lightning's ``ModelCheckpoint`` (see launch.py) written through
``checkpointing.AtomicCheckpointIO``; the NaN/inf guard lives in ``module_base`` because it must act
inside the training step, before the bad loss is back-propagated.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, RichProgressBar
from lightning.pytorch.utilities import rank_zero_warn

from cellmae.utils.atomic import atomic_path, write_text_atomic

METRICS_COLUMNS = ("step", "epoch", "loss", "lr", "crops_per_s", "elapsed_s")


class MetricsCSV(Callback):
    """One row per optimizer step in ``OUT/metrics.csv``: step, epoch, loss, lr, crops_per_s, elapsed_s.

    Rows are flushed as they are written, so a killed run keeps every finished step. On resume the
    rows after the restored step are dropped first (they belong to steps that will run again), so
    the file always describes one loss curve without duplicates. ``loss`` is the mean over ranks
    and over accumulated micro-batches; ``crops_per_s`` counts crops of all ranks per wall second
    between consecutive steps (data loading included).
    """

    def __init__(self, path: str | Path, extra_columns: tuple[str, ...] = ()):
        self.path = Path(path)
        self.columns = (*METRICS_COLUMNS, *extra_columns)
        self._file: io.TextIOWrapper | None = None
        self._writer: Any = None
        self._reset_step_state()
        self.last_crops_per_s: float | None = None
        self.step_seconds_ema: float | None = None

    def _reset_step_state(self) -> None:
        self._losses: list[float] = []
        self._extras: dict[str, list[float]] = {}
        self._crops = 0
        self._lr: float | None = None
        self._t_last: float | None = None
        self._t0: float | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._reset_step_state()
        self._t0 = self._t_last = time.perf_counter()
        self._elapsed_before = 0.0
        self._prev_step = trainer.global_step
        if not trainer.is_global_zero:
            return
        kept: list[dict[str, str]] = []
        if trainer.global_step > 0 and self.path.is_file():
            with self.path.open(newline="") as f:
                # complete rows only (a SIGKILL can cut the last line short), one per step up to the resume point
                seen: set[int] = set()
                for r in csv.DictReader(f):
                    if None in r.values() or not r.get("loss") or not str(r.get("step", "")).isdigit():
                        continue
                    step = int(r["step"])
                    if step <= trainer.global_step and step not in seen:
                        seen.add(step)
                        kept.append(r)
            if kept and kept[-1].get("elapsed_s"):
                self._elapsed_before = float(kept[-1]["elapsed_s"])
        with atomic_path(self.path) as tmp, tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore")
            w.writeheader()
            w.writerows(kept)
        self._file = self.path.open("a", newline="", buffering=1)
        self._writer = csv.DictWriter(self._file, fieldnames=self.columns, extrasaction="ignore")

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self._lr is None and trainer.optimizers:
            self._lr = float(trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not isinstance(outputs, dict) or "loss_all_ranks" not in outputs:
            return
        self._losses.append(float(outputs["loss_all_ranks"]))
        for k, v in outputs.get("extra_metrics", {}).items():
            self._extras.setdefault(k, []).append(float(v))
        self._crops += int(outputs["crops_all_ranks"])
        if trainer.global_step == self._prev_step:  # mid gradient accumulation: the step is not done yet
            return
        self._prev_step = trainer.global_step
        now = time.perf_counter()
        dt_s = max(now - (self._t_last or now), 1e-9)
        crops_per_s = self._crops / dt_s
        self.last_crops_per_s = crops_per_s
        self.step_seconds_ema = dt_s if self.step_seconds_ema is None else 0.9 * self.step_seconds_ema + 0.1 * dt_s
        row = {
            "step": trainer.global_step,
            "epoch": trainer.current_epoch,
            "loss": sum(self._losses) / len(self._losses),
            "lr": self._lr,
            "crops_per_s": round(crops_per_s, 3),
            "elapsed_s": round(self._elapsed_before + now - (self._t0 or now), 3),
            **{k: sum(v) / len(v) for k, v in self._extras.items()},
        }
        if trainer.loggers:
            pl_module.log("crops_per_s", crops_per_s, on_step=True, on_epoch=False, rank_zero_only=True)
        if self._writer is not None:
            self._writer.writerow(row)
        self._losses, self._extras, self._crops, self._lr = [], {}, 0, None
        self._t_last = now

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._close()

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = self._writer = None


class RunProgressBar(RichProgressBar):
    """Lightning's rich bar plus crops/s and an ETA for the whole run (the bar's own is per epoch)."""

    def __init__(self, metrics: MetricsCSV, **kwargs: Any):
        super().__init__(**kwargs)
        self._metrics = metrics

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        items.pop("crops_per_s", None)
        if self._metrics.last_crops_per_s is not None:
            items["crops/s"] = f"{self._metrics.last_crops_per_s:.1f}"
        remaining = _remaining_steps(trainer)
        if remaining is not None and self._metrics.step_seconds_ema is not None:
            items["eta"] = str(dt.timedelta(seconds=int(remaining * self._metrics.step_seconds_ema)))
        return items


def _remaining_steps(trainer: pl.Trainer) -> int | None:
    total = trainer.estimated_stepping_batches
    if total is None or total == float("inf"):
        return None
    return max(int(total) - trainer.global_step, 0)


class ReconstructionFigures(Callback):
    """Every N steps write ``OUT/recon/step_XXXXXX.png``: input / masked / reconstruction per channel.

    The crops are the first ``num_images`` of the unshuffled shards (the same in every run and after a
    resume), rendered with ``model.reconstruct(..., mask_seed=0)`` in eval mode. The global RNG is
    forked around the call so figures never change the training trajectory.
    """

    def __init__(self, out_dir: str | Path, every_n_steps: int, num_images: int = 2):
        self.out_dir = Path(out_dir)
        self.every_n_steps = every_n_steps
        self.num_images = num_images
        self._batch: dict[str, Any] | None = None
        self._warned = False

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if self.every_n_steps <= 0 or step == 0 or step % self.every_n_steps or not trainer.is_global_zero:
            return
        if getattr(self, "_last_step", None) == step:  # accumulation: several micro-batches share a step
            return
        self._last_step = step
        self.write_figure(trainer, pl_module, step)

    def write_figure(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int) -> Path | None:
        model = getattr(pl_module, "model", None)
        if model is None or not hasattr(model, "reconstruct"):
            return None
        if type(trainer.strategy).__name__.startswith("FSDP"):
            if not self._warned:
                rank_zero_warn("reconstruction figures are skipped under FSDP (the model is sharded)")
                self._warned = True
            return None
        with torch.random.fork_rng(devices=[]):
            if self._batch is None:
                self._batch = trainer.datamodule.preview_batch(self.num_images)
            images = self._batch["image"].to(pl_module.device)
            channels = self._batch["channels"]
            was_training = model.training
            model.eval()
            try:
                with torch.no_grad():
                    out = model.reconstruct(images, channels=channels, mask_seed=0)
            finally:
                model.train(was_training)
        path = self.out_dir / f"step_{step:06d}.png"
        save_reconstruction_figure(out, channels, path, title=f"step {step}")
        return path


def save_reconstruction_figure(out: dict[str, torch.Tensor], channels: Any, path: Path, title: str = "") -> Path:
    """Grid figure: per crop three rows (input, masked, reconstruction), one column per channel."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    inp = out["input"].detach().float().cpu()
    masked = out["masked"].detach().float().cpu()
    recon = out["reconstruction"].detach().float().cpu()
    n, c = inp.shape[:2]
    names = list(channels) if channels is not None and len(channels) == c else [f"ch{i}" for i in range(c)]
    fig, axes = plt.subplots(3 * n, c, figsize=(1.6 * c, 1.6 * 3 * n), squeeze=False)
    for i in range(n):
        for j in range(c):
            lo, hi = float(inp[i, j].min()), float(inp[i, j].max())
            for r, (label, img) in enumerate((("input", inp), ("masked", masked), ("recon", recon))):
                ax = axes[3 * i + r, j]
                ax.imshow(img[i, j].numpy(), cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1)
                ax.set_xticks([])
                ax.set_yticks([])
                if i == 0 and r == 0:
                    ax.set_title(names[j], fontsize=8)
                if j == 0:
                    ax.set_ylabel(f"{i}: {label}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
    return path


def write_run_summary(path: Path, summary: dict[str, Any]) -> Path:
    """A small JSON summary of a finished run (steps, final loss, throughput) for scaling studies."""
    import json

    return write_text_atomic(path, json.dumps(summary, indent=2, default=str) + "\n")
