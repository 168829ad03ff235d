"""The featurization loop: read fields -> prepare (tiles / handcrafted) -> features -> sites -> plates.

Fields are read and prepared in DataLoader workers (image decoding and tiling overlap with the
model), batches go through the model under inference mode and autocast, tile features are
averaged per site, and a plate is handed to ``on_plate`` as soon as its last site is done, so
output (and resume points) appear plate by plate.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, SequentialSampler

from cellmae.data.workers import worker_init_fn
from cellmae.embed.aggregate import mean_of_runs
from cellmae.embed.channels import ChannelPlan
from cellmae.utils.errors import InputError, is_expected, one_line


@dataclass(frozen=True)
class TilePrep:
    """Select the model's channels and cut a field into a grid of tiles (runs in a worker)."""

    indices: tuple[int, ...]
    tile: int | None  # None: the whole field is one image

    def __call__(self, field: np.ndarray) -> np.ndarray:
        from cellmae.data.tiling import grid_tiles

        x = field[list(self.indices)] if self.indices != tuple(range(field.shape[0])) else field
        return grid_tiles(x, self.tile) if self.tile else x[None]


@dataclass(frozen=True)
class HandcraftedPrep:
    """Handcrafted features of one field (runs in a worker): a (1, F) row."""

    indices: tuple[int, ...]
    names: tuple[str, ...]
    dna_index: int

    def __call__(self, field: np.ndarray) -> np.ndarray:
        from cellmae.models.handcrafted import field_features

        return field_features(field[list(self.indices)], self.names, self.dna_index)[None]


def inference_weights(model, device: torch.device, dtype: torch.dtype | None):
    """The model as the embedding runner runs it: on ``device``, in eval mode, and (the precision
    policy) on CPU under bf16 a bf16 copy of the whole model, cast once.

    Under CPU autocast the fp32 parameters (biases, norms, LayerScale) promote every activation back
    to fp32 and the next matmul casts it down again; bf16 weights keep the whole forward in bf16,
    which is faster, at the price of a bf16 residual stream (measured in docs/embed.md, "bf16 on CPU").
    The caller's model is left as it was: the cast goes to a copy.
    """
    model = model.to(device).eval()
    if device.type == "cpu" and dtype == torch.bfloat16:
        model = copy.deepcopy(model).to(dtype)
    return model


class ModelFeatures:
    """Run a model's ``forward_features`` on uint8 tiles; return float32 features per block."""

    def __init__(self, model, plan: ChannelPlan, blocks: Sequence[int], pool: str, *,
                 device: torch.device, dtype: torch.dtype | None, batch_size: int, image_stats: bool = False):
        self.model = inference_weights(model, device, dtype)
        self.plan, self.blocks, self.pool = plan, list(blocks), pool
        self.device, self.dtype, self.batch_size = device, dtype, batch_size
        self.image_stats = image_stats

    @torch.inference_mode()
    def __call__(self, rows: np.ndarray) -> dict[int, np.ndarray]:
        from cellmae.utils.device import autocast

        parts: dict[int, list[np.ndarray]] = {b: [] for b in self.blocks}
        for start in range(0, len(rows), self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(rows[start : start + self.batch_size]))
            x = x.to(self.device, non_blocking=True)
            with autocast(self.device, self.dtype):
                out = self.model.forward_features(x, channels=self.plan.names, blocks=self.blocks, pool=self.pool)
            for b in self.blocks:
                parts[b].append(out[b].float().cpu().numpy())
        feats = {b: np.concatenate(v) for b, v in parts.items()}
        if self.image_stats:
            stats = tile_image_stats(rows)
            feats = {b: np.concatenate([f, stats], axis=1) for b, f in feats.items()}
        return feats


def tile_image_stats(rows: np.ndarray) -> np.ndarray:
    """Per-channel mean and standard deviation of each uint8 tile, in [0, 1]: (n, 2C), means first.

    What the model's self-standardization (per tile and channel) removes; appended to the embedding,
    a uniform change in a stain's brightness or contrast stays visible to the map."""
    x = rows.reshape(len(rows), rows.shape[1], -1).astype(np.float32) / 255.0
    return np.concatenate([x.mean(-1), x.std(-1)], axis=1)


def precomputed_features(rows: np.ndarray) -> dict[int, np.ndarray]:
    """Features already computed in the workers (handcrafted): block 0."""
    return {0: rows.astype(np.float32, copy=False)}


class _Fields(Dataset):
    def __init__(self, screen, sites: np.ndarray, prep: Callable[[np.ndarray], np.ndarray]):
        self.screen, self.sites, self.prep = screen, sites, prep

    def __len__(self) -> int:
        return len(self.sites)

    def __getitem__(self, k: int) -> tuple[int, np.ndarray | None, str | None]:
        i = int(self.sites[k])
        try:
            return i, self.prep(self.screen.read_field(i)), None
        except Exception as err:
            if not is_expected(err):  # a bug: keep its traceback, but say which field hit it
                raise RuntimeError(f"featurizing field {i} ({_field_files(self.screen, i)}) failed: {err}") from err
            # An unreadable file is handed back as data, not raised: a DataLoader worker's
            # exception reaches the main process with the worker's traceback pasted into its
            # message, and the user should get one line that names the file.
            return i, None, _field_error(self.screen, i, err)


def _field_files(screen, i: int) -> str:
    files = screen.path(i) if hasattr(screen, "path") else f"field {i}"
    return ", ".join(str(f) for f in files) if isinstance(files, list | tuple) else str(files)


def _field_error(screen, i: int, err: BaseException) -> str:
    line = one_line(err)
    files = _field_files(screen, i)
    if not any(f.strip() in line for f in files.split(",")):
        line = f"field {i} ({files}): {line}"
    return f"{line}; fix or replace the file, then rerun the same command (finished plates are kept)"


def _collate(items: list[tuple[int, np.ndarray | None, str | None]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    errors = [e for _, _, e in items if e is not None]
    items = [(i, a) for i, a, e in items if e is None]
    idx = np.array([i for i, _ in items], dtype=np.int64)
    counts = np.array([len(a) for _, a in items], dtype=np.int64)
    rows = np.concatenate([a for _, a in items]) if items else np.zeros(0, dtype=np.uint8)
    return idx, rows, counts, errors


def featurize_sites(
    screen,
    plates: dict[str, np.ndarray],
    prep: Callable[[np.ndarray], np.ndarray],
    compute: Callable[[np.ndarray], dict[int, np.ndarray]],
    on_plate: Callable[[str, np.ndarray, dict[int, np.ndarray]], None],
    *,
    fields_per_batch: int,
    num_workers: int,
    on_sites: Callable[[np.ndarray, int], None] | None = None,
    pin_memory: bool = False,
) -> int:
    """Featurize the sites of ``plates`` ({plate id: site indices}), calling ``on_plate`` per plate.

    ``on_plate(pid, sites, {block: (n_sites, D)})`` receives the plate's sites in the given order.
    ``on_sites(site_indices, n_images)`` is called after every batch (progress). Returns the
    number of model images (tiles) processed.
    """
    order = [(pid, s) for pid, s in plates.items() if len(s)]
    if not order:
        return 0
    sites = np.concatenate([s for _, s in order])
    owner = {int(i): pid for pid, s in order for i in s}
    pos = {int(i): k for _, s in order for k, i in enumerate(s)}
    remaining = {pid: len(s) for pid, s in order}
    buffers: dict[str, dict[int, np.ndarray]] = {}

    loader = DataLoader(
        _Fields(screen, sites, prep),
        batch_sampler=BatchSampler(SequentialSampler(range(len(sites))), fields_per_batch, drop_last=False),
        collate_fn=_collate,
        num_workers=num_workers,
        pin_memory=pin_memory,
        # Workers read ahead; two batches each keep the model fed without holding whole plates in RAM.
        prefetch_factor=2 if num_workers else None,
        worker_init_fn=worker_init_fn(),  # workers die with this process, even after kill -9
    )
    images = 0
    for idx, rows, counts, errors in loader:
        if errors:
            raise InputError(errors[0])
        feats = compute(rows)
        images += len(rows)
        for b, f in feats.items():
            site_feats = mean_of_runs(f, counts)
            for k, i in enumerate(idx.tolist()):
                pid = owner[i]
                buf = buffers.setdefault(pid, {})
                if b not in buf:
                    buf[b] = np.empty((len(plates[pid]), f.shape[1]), dtype=np.float32)
                buf[b][pos[i]] = site_feats[k]
        for i in idx.tolist():
            pid = owner[i]
            remaining[pid] -= 1
            if remaining[pid] == 0:
                on_plate(pid, plates[pid], buffers.pop(pid))
        if on_sites is not None:
            on_sites(idx, len(rows))
    return images
