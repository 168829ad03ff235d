"""Screen presets as data: a dataclass of every knob and a table of named presets.

Sizes are chosen for what each preset is for: ``tiny`` for tests (seconds), ``demo`` for the
``cellmae demo`` pipeline (simulation well under a minute on 2 cores, so that training and
featurisation fit the ~10 minute budget), ``large`` for scale benchmarks. ``cellpainting-*``
variants render the same biology (same seed -> same genes, wells and cells) into the five Cell
Painting channels instead of the six RxRx stains, for channel-transfer experiments.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from cellmae.data.schema import CELLPAINTING_CHANNELS, RXRX_CHANNELS


@dataclass(frozen=True)
class ScreenSpec:
    """Everything that defines a simulated screen besides the seed."""

    # perturbations
    n_genes: int = 160
    guides_per_gene: int = 3  # each well draws one guide; guides differ in knockdown efficiency
    null_group_fraction: float = 0.3  # whole groups without any phenotype
    null_gene_fraction: float = 0.1  # extra genes without phenotype inside active groups
    n_compounds: int = 4
    # genes never drawn, with the whole bundled group of each (e.g. another screen's genes: a proxy screen
    # for block selection shares no gene and no functional group with the screen it selects for)
    exclude_genes: tuple[str, ...] = ()
    doses_uM: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0)
    # layout
    n_experiments: int = 3
    plates_per_experiment: int = 1  # plates are added automatically when wells do not fit
    gene_replicates: int = 1  # wells per gene per experiment
    compound_replicates: int = 1  # wells per compound dose per experiment
    controls_per_plate: int = 24
    sites_per_well: int = 1
    plate_rows: int = 16  # 384-well plate; the outer ring of wells is left empty (edge effects)
    plate_cols: int = 24
    experiment_prefix: str = "SIM"
    # images
    field_size: int = 256
    cell_radius_px: float = 12.0  # median cell radius; a 64x64 crop holds ~4-5 cell centres at this size
    cells_per_field: float = 75.0  # mean cell count of a control field at field_size 256 (scaled by area)
    channels: tuple[str, ...] = RXRX_CHANNELS
    # batch effects (per experiment, with smaller per-plate deviations)
    batch_strength: float = 1.0  # 0 switches all batch effects off
    # rendering
    workers: int = 1  # processes; output bytes do not depend on it
    png_compress_level: int = 1  # zlib level: 1 is ~3x faster than 6 for ~15% larger files
    # real pixels: a folder of real fields (any layout `cellmae shards` reads); when set, every site is a
    # crop of those fields with the well's effect planted into it (real_pixels.py) instead of rendered cells
    base_images: str = ""

    def __post_init__(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(f"simulate: invalid parameter {msg}")

        need(self.n_genes >= 1, f"n_genes={self.n_genes} (must be >= 1)")
        need(self.guides_per_gene >= 1, f"guides_per_gene={self.guides_per_gene} (must be >= 1)")
        need(0 <= self.null_group_fraction < 1, f"null_group_fraction={self.null_group_fraction} (must be in [0, 1))")
        need(0 <= self.null_gene_fraction < 1, f"null_gene_fraction={self.null_gene_fraction} (must be in [0, 1))")
        need(self.n_compounds >= 0, f"n_compounds={self.n_compounds} (must be >= 0)")
        need(len(self.doses_uM) >= 1 and all(d > 0 for d in self.doses_uM), f"doses_uM={self.doses_uM} (positive)")
        need(self.n_experiments >= 1, f"n_experiments={self.n_experiments} (must be >= 1)")
        need(self.plates_per_experiment >= 1, f"plates_per_experiment={self.plates_per_experiment} (must be >= 1)")
        need(self.gene_replicates >= 1, f"gene_replicates={self.gene_replicates} (must be >= 1)")
        need(self.compound_replicates >= 1, f"compound_replicates={self.compound_replicates} (must be >= 1)")
        need(self.controls_per_plate >= 1, f"controls_per_plate={self.controls_per_plate} (controls on every plate)")
        need(self.sites_per_well >= 1, f"sites_per_well={self.sites_per_well} (must be >= 1)")
        need(3 <= self.plate_rows <= 32 and 3 <= self.plate_cols <= 48, f"plate_rows/cols={self.plate_rows}x{self.plate_cols}")
        need(self.controls_per_plate < self.wells_per_plate, f"controls_per_plate={self.controls_per_plate} >= usable wells {self.wells_per_plate}")
        need(32 <= self.field_size <= 4096, f"field_size={self.field_size} (must be in 32..4096)")
        need(3.0 <= self.cell_radius_px <= self.field_size / 4, f"cell_radius_px={self.cell_radius_px} (3..field_size/4)")
        need(self.cells_per_field > 0, f"cells_per_field={self.cells_per_field} (must be > 0)")
        need(len(self.channels) >= 1, "channels=() (need at least one)")
        need(self.batch_strength >= 0, f"batch_strength={self.batch_strength} (must be >= 0)")
        need(self.workers >= 1, f"workers={self.workers} (must be >= 1)")
        need(0 <= self.png_compress_level <= 9, f"png_compress_level={self.png_compress_level} (0..9)")
        need(not self.base_images or self.field_size <= 512, f"field_size={self.field_size} with base_images (at most 512)")

    @property
    def wells_per_plate(self) -> int:
        """Usable wells of a plate (the outer ring is left empty)."""
        return (self.plate_rows - 2) * (self.plate_cols - 2)


# tiny: 128 px fields hold ~19 cells, so two sites per well and 8 controls per plate keep
# simple per-well features reliable enough for tests of the ground truth
_TINY = dict(
    n_genes=12, n_compounds=2, doses_uM=(0.3, 3.0), n_experiments=2, controls_per_plate=8,
    field_size=128, sites_per_well=2, guides_per_gene=2,
)
_DEMO: dict = {"workers": 2}  # otherwise the dataclass defaults are the demo
_LARGE = dict(
    n_genes=3000, n_compounds=40, n_experiments=3, controls_per_plate=30, workers=2,
)

# Real ExampleFly pixels (3 channels) with planted effects: 80 genes and 4 compounds over 3 experiments,
# 256 px sites cut from the three 1006x1000 fields. Needs --set base_images=DIR (the ExampleFly folder).
_EXAMPLEFLY = dict(n_genes=80, channels=("DNA", "FITC", "Rhodamine"), experiment_prefix="FLY", workers=2)
REAL_PIXEL_PRESETS = ("examplefly-tiny", "examplefly-demo")

PRESETS: dict[str, dict] = {
    "tiny": _TINY,
    "demo": _DEMO,
    "large": _LARGE,
    "cellpainting-tiny": {**_TINY, "channels": CELLPAINTING_CHANNELS},
    "cellpainting-demo": {**_DEMO, "channels": CELLPAINTING_CHANNELS},
    "cellpainting-large": {**_LARGE, "channels": CELLPAINTING_CHANNELS},
    "examplefly-tiny": {**_TINY, "channels": _EXAMPLEFLY["channels"], "experiment_prefix": "FLY"},
    "examplefly-demo": _EXAMPLEFLY,
}


def spec_fields() -> dict[str, dataclasses.Field]:
    """The overridable parameters of a :class:`ScreenSpec`, by name."""
    return {f.name: f for f in dataclasses.fields(ScreenSpec)}


def resolve_spec(preset: str, **overrides) -> ScreenSpec:
    """The spec of a named preset with ``overrides`` applied; errors name the bad key."""
    if preset not in PRESETS:
        raise ValueError(f"simulate: unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    unknown = sorted(set(overrides) - set(spec_fields()))
    if unknown:
        raise ValueError(f"simulate: unknown parameter(s) {unknown}; valid: {sorted(spec_fields())}")
    values = {**PRESETS[preset], **overrides}
    for key in ("channels", "doses_uM"):
        if key in values:
            values[key] = tuple(values[key])
    return ScreenSpec(**values)


def check_base_images(preset: str, spec: ScreenSpec) -> None:
    """A real-pixel preset needs its folder of real fields (``base_images``)."""
    if preset in REAL_PIXEL_PRESETS and not spec.base_images:
        raise ValueError(f"simulate: preset {preset!r} cuts its sites from real fields; give the folder with "
                         "--set base_images=DIR (e.g. the ExampleFly images of the shared data)")


def parse_override(text: str) -> tuple[str, object]:
    """Parse a CLI ``key=value`` into a typed override (lists are comma-separated)."""
    key, sep, raw = text.partition("=")
    key = key.strip().replace("-", "_")
    fields = spec_fields()
    if not sep or key not in fields:
        raise ValueError(f"simulate: --set {text!r} is not key=value with key in {sorted(fields)}")
    default = fields[key].default
    try:
        if isinstance(default, tuple):
            items = [x.strip() for x in raw.split(",") if x.strip()]
            value: object = tuple(float(x) for x in items) if key == "doses_uM" else tuple(items)
        elif isinstance(default, bool):
            value = raw.strip().lower() in {"1", "true", "yes"}
        else:
            value = type(default)(raw.strip())
    except ValueError as err:
        raise ValueError(f"simulate: --set {text!r}: {err}") from err
    return key, value


__all__ = ["PRESETS", "REAL_PIXEL_PRESETS", "ScreenSpec", "check_base_images", "parse_override", "resolve_spec", "spec_fields"]
