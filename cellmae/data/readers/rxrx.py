"""RxRx layout (RxRx1 / RxRx3 / the cellmae simulator): one PNG per channel per site.

``ROOT/metadata.csv`` (or ``ROOT/metadata/*.csv``) has one row per site (RxRx1, simulator) or per
well (RxRx3: sites are then found on disk); images live at
``ROOT[/images]/{experiment}/Plate{plate}/{well}_s{site}_w{k}.png`` with k = 1..N.
Column aliases: RxRx1 has ``sirna`` (no ``perturbation_type``: SIRNA), RxRx3 has ``address`` for the
well and ``experiment_name`` for the experiment. Mapping to the schema is in docs/CONTRACTS.md s.1.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from cellmae.data import schema as S
from cellmae.data.readers.base import ReadError, Screen, read_metadata_csv, stack_planes
from cellmae.data.readers.storage import with_options
from cellmae.layout import SCREEN_CHANNELS_FILE, SCREEN_METADATA_FILE

_ALIASES = {"experiment": ("experiment", "experiment_name"), "well": ("well", "address"),
            "well_type": ("well_type", "well_type_label")}
_CONTROL_NAMES = {"EMPTY", "NON-TARGETING", "NONTARGETING", "DMSO", "CONTROL"}


def find_metadata_csv(root) -> Path | None:
    """The RxRx metadata CSV under ``root`` (``metadata.csv`` or ``metadata/metadata.csv``), if any."""
    for cand in (root / SCREEN_METADATA_FILE, root / "metadata" / SCREEN_METADATA_FILE):
        if cand.is_file():
            return cand
    return None


def _col(df: pd.DataFrame, key: str, csv: Path, required: bool = True) -> str | None:
    for name in _ALIASES.get(key, (key,)):
        if name in df.columns:
            return name
    if required:
        raise ReadError(
            f"{csv}: missing column {key!r} (accepted: {list(_ALIASES.get(key, (key,)))}); have {list(df.columns)}"
        )
    return None


def _image_root(root: Path, experiment: str) -> Path:
    # RxRx1/RxRx3 downloads nest the experiments under images/; the simulator writes them at the root.
    if (root / "images" / experiment).is_dir() and not (root / experiment).is_dir():
        return root / "images"
    return root


class RxRxScreen(Screen):
    """A screen in the RxRx layout; see the module docstring."""

    layout = "rxrx"

    def __init__(
        self,
        root: str | Path,
        *,
        metadata_csv: str | Path | None = None,
        channels: list[str] | tuple[str, ...] | None = None,
        suffix: str | None = None,
        storage_options: dict | None = None,
        **scaling,
    ) -> None:
        root = with_options(root, storage_options)
        csv = with_options(metadata_csv, storage_options) if metadata_csv else find_metadata_csv(root)
        if csv is None or not csv.is_file():
            raise ReadError(f"{csv or root / SCREEN_METADATA_FILE}: RxRx metadata CSV not found")
        raw = read_metadata_csv(csv)
        self.root = root
        exp_c, well_c = _col(raw, "experiment", csv), _col(raw, "well", csv)
        plate_c = _col(raw, "plate", csv)
        raw = raw.rename(columns={exp_c: "experiment", well_c: "well", plate_c: "plate"})
        self.suffix = suffix or self._find_suffix(raw)
        if "site" not in raw.columns:
            raw = self._expand_sites(raw, csv)
        # The channel count comes from the names (channels= / channels.json) or from every site of
        # the screen, never from one site: a plane missing there must show up as a missing file,
        # not shrink the whole screen by a channel.
        chans = tuple(channels) if channels else self._named_channels(root)
        n_found = self._count_channels(raw, csv)
        if chans is None:
            chans = self._default_names(n_found, csv)
        elif n_found > len(chans):
            raise ReadError(
                f"{csv}: sites have channel files up to w{n_found} but only {len(chans)} channel names {chans}; "
                f"name all {n_found} (channels.json or --channels)"
            )
        n_ch = len(chans)
        files = [
            tuple(self._file(r.experiment, r.plate, r.well, r.site, k) for k in range(1, n_ch + 1))
            for r in raw.itertuples()
        ]
        super().__init__(_schema_frame(raw, csv), chans, files, source=csv, **scaling)

    def _file(self, experiment: str, plate: str, well: str, site: str | int, k: int) -> Path:
        return (
            _image_root(self.root, experiment)
            / experiment
            / f"Plate{plate}"
            / f"{well}_s{site}_w{k}{self.suffix}"
        )

    def _find_suffix(self, raw: pd.DataFrame) -> str:
        """The image files' extension (.png, .jp2, .tif ...) as found in the first plate folder that has any;
        only to find the files: they are decoded by their content."""
        self.suffix = ".png"
        rx = re.compile(r"^[^_]+_s[^_]+_w\d+(\.[A-Za-z0-9]+)$")
        for exp, plate in raw[["experiment", "plate"]].drop_duplicates().itertuples(index=False):
            try:
                found = {m.group(1) for e in self._file(exp, plate, "X", 0, 1).parent.iterdir() if (m := rx.match(e.name))}
            except FileNotFoundError:
                continue
            if found:
                return ".png" if ".png" in found else sorted(found)[0]
        return ".png"

    def _expand_sites(self, raw: pd.DataFrame, csv: Path) -> pd.DataFrame:
        """RxRx3 lists wells, not sites: one row per ``{well}_s{site}_w1`` file found."""
        per_well = raw.groupby(["experiment", "plate", "well"], sort=False).size()
        if (per_well > 1).any():  # rows per site without saying which: expanding them would duplicate sites
            (exp, plate, well), k = per_well.idxmax(), int(per_well.max())
            raise ReadError(
                f"{csv}: missing column 'site', and well {well} of plate {plate} ({exp}) has {k} rows; add a site "
                "column (one row per site), or keep one row per well to find the sites on disk"
            )
        rows = []
        for r in raw.to_dict("records"):
            pattern = self._file(r["experiment"], r["plate"], r["well"], 0, 1)
            rx = re.compile(rf"^{re.escape(r['well'])}_s(\d+)_w1{re.escape(self.suffix)}$")
            sites = sorted(
                int(m.group(1))
                for p in pattern.parent.glob(f"{r['well']}_s*_w1{self.suffix}")
                if (m := rx.match(p.name))
            )
            if not sites:
                raise ReadError(
                    f"{str(pattern).replace('_s0_', '_s*_')}: no image for metadata row well_id={r.get('well_id', r['well'])} of {csv}"
                )
            rows.extend({**r, "site": str(s)} for s in sites)
        return pd.DataFrame(rows)

    def _count_channels(self, raw: pd.DataFrame, csv: Path) -> int:
        """The highest channel number k of any ``{well}_s{site}_w{k}`` file in the screen's plate folders.

        One directory listing per plate: fast enough for RxRx3-sized screens, and a site missing planes
        cannot hide a channel.
        """
        rx = re.compile(rf"^[^_]+_s[^_]+_w(\d+){re.escape(self.suffix)}$")
        n = 0
        for exp, plate in raw[["experiment", "plate"]].drop_duplicates().itertuples(index=False):
            folder = self._file(exp, plate, "X", 0, 1).parent
            try:
                n = max([n, *(int(m.group(1)) for e in folder.iterdir() if (m := rx.match(e.name)))])
            except FileNotFoundError:
                continue  # a plate without images: its files are reported missing by check_files()
        if n == 0:
            r = raw.iloc[0]
            first = self._file(r["experiment"], r["plate"], r["well"], r["site"], 1)
            raise ReadError(f"{first}: no image for metadata row 1 of {csv} (no channel files in any plate folder)")
        return n

    @staticmethod
    def _named_channels(root) -> tuple[str, ...] | None:
        cfile = root / SCREEN_CHANNELS_FILE
        if not cfile.is_file():
            return None
        try:
            names = json.loads(cfile.read_text())["channels"]
        except Exception as e:
            raise ReadError(f'{cfile}: expected {{"channels": [names of w1..wN]}} ({e})') from e
        return tuple(names)

    @staticmethod
    def _default_names(n: int, csv: Path) -> tuple[str, ...]:
        if n > len(S.RXRX_CHANNELS):
            raise ReadError(
                f"{csv}: {n} channels per site but no channels.json to name them (default names cover {len(S.RXRX_CHANNELS)})"
            )
        return S.RXRX_CHANNELS[:n]

    def _read_raw(self, i: int) -> np.ndarray:
        paths = self.path(i)
        return stack_planes([self.read_plane(p) for p in paths], paths, rescale_uint8=self.rescale_uint8)


def _schema_frame(raw: pd.DataFrame, csv: Path) -> pd.DataFrame:
    """Map RxRx columns onto the schema (docs/CONTRACTS.md s.1)."""
    n = len(raw)

    def get(name: str) -> pd.Series:
        return raw[name] if name in raw.columns else pd.Series([None] * n, index=raw.index, dtype=object)

    well_type = get(_col(raw, "well_type", csv, required=False) or "well_type").fillna("").str.strip().str.lower()
    if "perturbation_type" in raw.columns:
        ptype = raw["perturbation_type"].fillna("").str.strip().str.upper()
    elif "sirna" in raw.columns:  # RxRx1
        ptype = pd.Series("SIRNA", index=raw.index)
    else:
        raise ReadError(
            f"{csv}: need a perturbation_type column (or sirna, as in RxRx1); have {list(raw.columns)}"
        )
    gene, sirna, treatment = get("gene"), get("sirna"), get("treatment")
    pert = gene.fillna(sirna).fillna(treatment)
    compound = ptype.eq("COMPOUND") & treatment.notna()
    pert = pert.where(~compound, treatment)
    is_control = well_type.eq("negative_control") | ptype.eq("CONTROL")
    pert = pert.where(pert.notna() | ~is_control, "EMPTY")
    ptype = ptype.where(ptype.ne("") | ~is_control, "CONTROL")
    out = pd.DataFrame(
        {
            S.EXPERIMENT: raw["experiment"],
            S.PLATE: raw["plate"],
            S.WELL: raw["well"].str.strip().str.upper(),
            S.SITE: raw["site"],
            S.PERTURBATION: pert,
            S.PERTURBATION_TYPE: ptype,
            S.CONCENTRATION: get("concentration"),  # validate_metadata names a non-numeric row
            S.IS_CONTROL: is_control,
        }
    )
    for src, dst in (("well_type", "Metadata_WellType"), ("well_type_label", "Metadata_WellType"),
                     ("cell_type", "Metadata_CellType")):
        if src in raw.columns:
            out[dst] = raw[src].fillna("")
    return out
