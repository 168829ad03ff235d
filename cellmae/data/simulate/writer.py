"""``simulate_screen``: draw the biology, lay out plates, render every site, write the RxRx layout.

Output (docs/CONTRACTS.md sections 1-2)::

    ROOT/metadata.csv, ROOT/channels.json, ROOT/{experiment}/Plate{plate}/{well}_s{site}_w{k}.png
    ROOT/truth/genes.csv, compounds.csv, relationships.csv   (the contract)
    ROOT/truth/guides.csv, wells.csv, batch_effects.csv, simulation.json   (extra ground truth)

Determinism: every random stream comes from ``SeedSequence(seed)`` spawned by purpose, and each
site has its own stream keyed by its index, so bytes do not depend on worker count or order.
Crash safety: sites render into a hidden ``.ROOT.partial`` folder (each PNG written atomically);
a rerun with the same seed and parameters resumes there, and the folder is renamed onto ROOT only
when complete. Calling again on a finished ROOT with the same parameters returns at once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from cellmae import layout
from cellmae.data.simulate.batch_effects import (
    SHIFT_COLUMNS,
    channels_uint8,
    mixing_matrix,
    sample_batch_effects,
)
from cellmae.data.simulate.biology import (
    EFFECT_COLUMNS,
    MORPHOLOGY_PARAMS,
    Biology,
    relationship_pairs,
    sample_biology,
)
from cellmae.data.simulate.layout import well_layout
from cellmae.data.simulate.presets import ScreenSpec, check_base_images, resolve_spec
from cellmae.data.simulate.real_pixels import real_pixel_site
from cellmae.data.simulate.render import place_cells, render_stains, sample_cells
from cellmae.data.workers import die_with_parent
from cellmae.utils.atomic import atomic_path, write_text_atomic

METADATA_COLUMNS = ("well_id", "experiment", "plate", "well", "site", "gene", "treatment", "concentration",
                    "perturbation_type", "well_type")
_STREAMS = {"biology": 0, "layout": 1, "batch": 2, "sites": 3}  # SeedSequence spawn keys per purpose


def _rng(seed: int, purpose: str, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_STREAMS[purpose], *key)))


def site_png_path(root: Path, experiment: str, plate: int, well: str, site: int, k: int) -> Path:
    """Path of channel ``k`` (1-based) of one site in the RxRx layout."""
    return root / experiment / f"Plate{plate}" / f"{well}_s{site}_w{k}.png"


def well_effects(wells: pd.DataFrame, bio: Biology) -> np.ndarray:
    """(n_wells, N_PARAMS) full-penetrance effect of each well's perturbation (zeros for controls)."""
    gene_fx = bio.genes.set_index("gene")[list(EFFECT_COLUMNS)]
    out = np.zeros((len(wells), len(EFFECT_COLUMNS)))
    for i, (ptype, gene, treat, conc) in enumerate(
        wells[["perturbation_type", "gene", "treatment", "concentration"]].itertuples(index=False)
    ):
        if ptype == "CRISPR":
            out[i] = gene_fx.loc[gene].to_numpy()
        elif ptype == "COMPOUND":
            out[i] = bio.compound_effect(treat, conc)
    return out


def render_site(spec: ScreenSpec, seed: int, index: int, effect: np.ndarray, penetrance: float,
                batch: pd.Series) -> np.ndarray:
    """uint8 (C, H, W) image of site number ``index`` (its random stream is keyed by the index)."""
    rng = _rng(seed, "sites", index)
    if spec.base_images:
        return real_pixel_site(spec, rng, effect, penetrance, batch)
    shift = batch[list(SHIFT_COLUMNS)].to_numpy(np.float64)
    density = spec.cells_per_field * (spec.field_size / 256) ** 2 * batch["density"]
    density *= np.exp(0.3 * penetrance * effect[MORPHOLOGY_PARAMS.index("density")])
    n = int(rng.poisson(density))
    cells = sample_cells(effect, penetrance, n, spec.cell_radius_px, rng, baseline=shift)
    centres = place_cells(cells["radius"], spec.field_size, rng)
    stains = render_stains(cells, centres, spec.field_size, rng)
    return channels_uint8(stains, batch, spec.channels, rng)


def _write_png(path: Path, image: np.ndarray, level: int) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG", compress_level=level)


def _render_task(args) -> None:
    spec, seed, root, index, site_row, effect, penetrance, batch = args
    image = render_site(spec, seed, index, effect, penetrance, batch)
    # the last channel is written last: its existence marks the site complete for resuming
    for k in range(image.shape[0]):
        path = site_png_path(root, site_row["experiment"], site_row["plate"], site_row["well"], site_row["site"], k + 1)
        _write_png(path, image[k], spec.png_compress_level)


def _spec_record(spec: ScreenSpec, preset: str, seed: int) -> dict:
    record = json.loads(json.dumps(dataclasses.asdict(spec)))
    if not record["exclude_genes"]:  # absent when unused, so screens simulated before the field existed are reused
        del record["exclude_genes"]
    return {"preset": preset, "seed": int(seed), "spec": record, "format": "cellmae-simulate/1"}


def _same_run(path: Path, record: dict) -> bool:
    """Whether ``path`` holds a simulation.json of the same seed and parameters (workers aside)."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    strip = lambda r: {**r, "spec": {k: v for k, v in r["spec"].items() if k != "workers"}}  # noqa: E731
    return strip(old) == strip(record)


def simulate_screen(out_dir: str | os.PathLike, preset: str = "tiny", seed: int = 0, *, overwrite: bool = False,
                    progress: bool = False, **overrides) -> Path:
    """Simulate a screen of ``preset`` (with ``overrides`` of ScreenSpec fields) into ``out_dir``.

    Returns ``out_dir``. A finished ``out_dir`` of the same preset, seed and parameters is reused;
    a different existing ``out_dir`` is replaced only with ``overwrite=True``.
    """
    spec = resolve_spec(preset, **overrides)
    check_base_images(preset, spec)
    if spec.base_images:
        folder = Path(spec.base_images).expanduser().absolute()
        if not folder.is_dir():
            raise FileNotFoundError(f"simulate: base_images={spec.base_images}: no such folder (give a folder of real fields)")
        spec = dataclasses.replace(spec, base_images=str(folder))
    else:
        mixing_matrix(spec.channels)  # fail on unknown channel names before any work
    root = Path(out_dir).absolute()
    record = _spec_record(spec, preset, seed)
    if root.exists():
        if _same_run(root / layout.TRUTH_DIR / layout.TRUTH_SIMULATION_FILE, record) and (root / layout.SCREEN_METADATA_FILE).is_file():
            return root
        if not (root / layout.TRUTH_DIR / layout.TRUTH_SIMULATION_FILE).is_file() and any(root.iterdir()):
            # never delete a folder we did not write, even with overwrite
            raise FileExistsError(f"simulate: {root} exists, is not empty and is not a simulated screen; choose another folder")
        if not overwrite:
            raise FileExistsError(f"simulate: {root} exists and holds another screen; pass overwrite=True (--overwrite)")
    stage = root.with_name(f".{root.name}.partial")
    if stage.exists() and not _same_run(stage / layout.TRUTH_DIR / layout.TRUTH_SIMULATION_FILE, record):
        shutil.rmtree(stage)
    write_text_atomic(stage / layout.TRUTH_DIR / layout.TRUTH_SIMULATION_FILE, json.dumps(record, indent=2))

    bio = sample_biology(spec, _rng(seed, "biology"))
    wells = well_layout(spec, bio, _rng(seed, "layout"))
    batches = sample_batch_effects(wells[["experiment", "plate"]].drop_duplicates(), spec.batch_strength,
                                   _rng(seed, "batch"))
    sites = wells.loc[wells.index.repeat(spec.sites_per_well)].reset_index(drop=True)
    sites.insert(4, "site", np.tile(np.arange(1, spec.sites_per_well + 1), len(wells)))
    effects = well_effects(wells, bio).repeat(spec.sites_per_well, axis=0)
    batch_of = batches.set_index(["experiment", "plate"])
    tasks = []
    for i, row in enumerate(sites[["experiment", "plate", "well", "site", "efficiency"]].to_dict("records")):
        last = site_png_path(stage, row["experiment"], row["plate"], row["well"], row["site"], len(spec.channels))
        if not last.is_file():  # resume: skip sites already on disk
            tasks.append((spec, seed, stage, i, row, effects[i], row["efficiency"],
                          batch_of.loc[(row["experiment"], row["plate"])]))
    _run_tasks(tasks, spec.workers, progress)

    _write_truth(stage, spec, bio, wells, batches)
    meta = sites[list(METADATA_COLUMNS)]
    with atomic_path(stage / layout.SCREEN_METADATA_FILE) as tmp:
        meta.to_csv(tmp, index=False)
    write_text_atomic(stage / layout.SCREEN_CHANNELS_FILE, json.dumps({"channels": list(spec.channels)}))
    if root.exists():
        shutil.rmtree(root)
    os.replace(stage, root)
    return root


def _run_tasks(tasks: list, workers: int, progress: bool) -> None:
    from rich.progress import Progress

    with Progress(disable=not progress, transient=True) as bar:
        job = bar.add_task("rendering sites", total=len(tasks))
        if workers <= 1 or len(tasks) < 2 * workers:
            for t in tasks:
                _render_task(t)
                bar.advance(job)
            return
        with ProcessPoolExecutor(max_workers=workers, initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
            for _ in pool.map(_render_task, tasks, chunksize=8):
                bar.advance(job)


def _write_truth(stage: Path, spec: ScreenSpec, bio: Biology, wells: pd.DataFrame, batches: pd.DataFrame) -> None:
    truth = stage / layout.TRUTH_DIR
    genes = bio.genes[["gene", "group", "source", "strength", "has_phenotype", *EFFECT_COLUMNS]]
    compounds = bio.compounds[["compound", "target_gene", "concentration", "strength", "ec50_uM", "hill"]]
    wells_truth = wells[["well_id", "experiment", "plate", "well", "perturbation_type", "gene", "treatment",
                         "concentration", "efficiency"]].rename(columns={"efficiency": "penetrance"})
    tables = {
        layout.TRUTH_GENES_FILE: genes,
        layout.TRUTH_COMPOUNDS_FILE: compounds,
        layout.TRUTH_RELATIONSHIPS_FILE: relationship_pairs(bio.genes),
        layout.TRUTH_GUIDES_FILE: bio.guides,
        layout.TRUTH_WELLS_FILE: wells_truth,
        layout.TRUTH_BATCH_EFFECTS_FILE: batches,
    }
    for name, df in tables.items():
        with atomic_path(truth / name) as tmp:
            df.to_csv(tmp, index=False)
    write_text_atomic(truth / layout.TRUTH_EFFECT_AXES_FILE, json.dumps({"effect_columns": list(EFFECT_COLUMNS),
                                                               "morphology_params": list(MORPHOLOGY_PARAMS)}, indent=2))
