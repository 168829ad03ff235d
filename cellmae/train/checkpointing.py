"""Resumable checkpoints: atomic writes and weights-only loading.

Lightning ``.ckpt`` files are torch pickles. cellmae only ever loads the resume files a run wrote
itself, and loads them with ``torch.load(weights_only=True)`` (tensors, dicts, lists, numbers and
strings only; no code is unpickled). Random state needs no saving: the training step reseeds torch
from (seed, step, rank) every step (see ``module_base.step_seed``), so a resumed run draws the same
masks and drop-path patterns as an uninterrupted one. Never resume from a ``.ckpt`` obtained from someone else: share
final weights as ``model.safetensors`` + ``config.json`` instead.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from cellmae.layout import TRAIN_LAST_CHECKPOINT
from cellmae.utils.atomic import atomic_path
from cellmae.utils.errors import InputError, one_line


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO: write next to the target, fsync, rename; load with weights_only=True.

    Why not Lightning's own ``_atomic_save``: its fsspec transaction stages local files in the system
    temp dir and *moves* them, which is a copy (not atomic) when /tmp is another filesystem, so a
    SIGKILL mid-copy can leave a truncated ``last.ckpt`` that the next ``--resume`` trusts.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike,
                        storage_options: Any | None = None) -> None:
        if "://" in str(path):  # remote storage: fsspec's transaction is the atomic primitive there
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic_path(path) as tmp:
            with tmp.open("wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())

    def load_checkpoint(self, path: str | os.PathLike, map_location: Any | None = None,
                        weights_only: bool | None = None) -> dict[str, Any]:
        if weights_only is False:
            raise ValueError(f"{path}: refusing to load a checkpoint with weights_only=False (it would unpickle "
                             "arbitrary code); cellmae checkpoints load with weights_only=True")
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {path} does not exist")
        try:
            return torch.load(path, map_location=map_location or "cpu", weights_only=True)
        except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError) as exc:
            if "weights only" in str(exc).lower() or "weights_only" in str(exc):
                raise  # a refused pickle: the CLI's error line says so (and never suggests weights_only=False)
            # torch names the zip record, not the file, and says nothing of what to do.
            raise InputError(f"{path}: truncated or corrupt resume checkpoint ({one_line(exc).split('. ')[0]}); delete it to resume "
                             f"from the previous checkpoint in {path.parent} (if any), or train again without --resume "
                             "into a new --out") from exc


def find_resume_checkpoint(checkpoint_dir: str | os.PathLike) -> Path | None:
    """The newest resumable checkpoint: ``last.ckpt`` / ``step*.ckpt`` in ``checkpoint_dir`` or the
    ``hpc_ckpt_*.ckpt`` Lightning writes into the run folder when SLURM signals a requeue; None if none."""
    d = Path(checkpoint_dir)
    candidates = [*d.glob(TRAIN_LAST_CHECKPOINT), *d.glob("step*.ckpt"), *d.parent.glob("hpc_ckpt_*.ckpt")]
    candidates = [p for p in candidates if p.is_file()]
    return max(candidates, key=lambda p: p.stat().st_mtime_ns) if candidates else None
