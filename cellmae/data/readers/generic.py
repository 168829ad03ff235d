"""Generic image folders: one multi-channel file per field, or one file per channel.

* one multi-channel TIFF / OME-TIFF / OME-Zarr per field: the channel axis comes from the file's
  axes (OME metadata, or tifffile's series axes), channel names from OME metadata or ``channels``.
  A Z stack is max-projected; a time series keeps its first time point.
* one file per channel, matched by ``pattern`` with ``{field}`` and ``{channel}`` placeholders, e.g.
  ``"{field}_{channel}.TIF"`` for the real ExampleFly images (``01_POS002_D.TIF`` ...). Without a
  pattern, files named ``<field>_<token>.<ext>`` where every field has the same tokens are read
  this way. Tokens are named by ``channels`` ({token: name}) or by common aliases (D -> DNA ...).

Such folders carry no plate map, so metadata is filled in a documented way (docs/data.md):
Experiment = ``experiment`` (default: the folder name), Plate = ``plate``, each field becomes its
own pseudo-well numbered in field-name order on a 24-column plate (A01, A02, ..., A24, B01, ...),
Site = 1, Perturbation and PerturbationType = UNKNOWN, IsControl = False, and the field name is kept
in ``Metadata_Field``. A ``metadata_csv`` with a ``Metadata_Field`` column overrides any of these.
"""

from __future__ import annotations

import io
import re
import string
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cellmae.data import schema as S
from cellmae.data.readers.base import (
    IMAGE_SUFFIXES,
    TIFF_SUFFIXES,
    ReadError,
    Screen,
    read_metadata_csv,
    stack_planes,
)
from cellmae.data.readers.storage import is_url, read_bytes, with_options

FIELD = "Metadata_Field"
CHANNEL_ALIASES = {
    "D": "DNA",
    "DAPI": "DNA",
    "HOECHST": "DNA",
    "F": "FITC",
    "R": "Rhodamine",
    "BF": "Brightfield",
}
_PLATE_COLUMNS = 24


def pseudo_well(k: int) -> str:
    """The k-th (0-based) well id in row-major order on a 24-column plate: A01 ... A24, B01, ..."""
    row, col = divmod(k, _PLATE_COLUMNS)
    letters = string.ascii_uppercase
    name = letters[row] if row < 26 else letters[row // 26 - 1] + letters[row % 26]
    if row >= 26 * 27:
        raise ValueError(f"too many fields ({k + 1}) for pseudo-well ids; give a metadata CSV")
    return f"{name}{col + 1:02d}"


def _is_zarr(p: Path) -> bool:
    return p.is_dir() and p.suffix.lower() == ".zarr"


def _pattern_regex(pattern: str, tokens: Sequence[str] | None) -> re.Pattern:
    if "{field}" not in pattern or "{channel}" not in pattern:
        raise ValueError(f"pattern {pattern!r} needs both {{field}} and {{channel}} placeholders")
    chan = "|".join(re.escape(t) for t in tokens) if tokens else r"[^_/\\.]+"
    parts = re.split(r"(\{field\}|\{channel\})", pattern)
    body = "".join(
        "(?P<field>.+?)" if p == "{field}" else f"(?P<channel>{chan})" if p == "{channel}" else re.escape(p)
        for p in parts
    )
    return re.compile(f"^{body}$")


class GenericScreen(Screen):
    """A folder of images read as fields; see the module docstring."""

    layout = "generic"

    def __init__(
        self,
        root: str | Path,
        *,
        pattern: str | None = None,
        channels: Mapping[str, str] | Sequence[str] | None = None,
        experiment: str | None = None,
        plate: str = "1",
        metadata_csv: str | Path | None = None,
        storage_options: dict | None = None,
        **scaling,
    ) -> None:
        root = with_options(root, storage_options)
        metadata_csv = with_options(metadata_csv, storage_options) if metadata_csv else None
        if not root.is_dir():
            raise ReadError(f"{root}: not a folder of images")
        self.root = root
        token_map = dict(channels) if isinstance(channels, Mapping) else None
        tokens = list(token_map) if token_map else (list(channels) if channels else None)
        self.per_channel = pattern is not None or self._looks_per_channel(root)
        if self.per_channel:
            fields, chan_tokens, files = self._per_channel_files(
                root, pattern or "{field}_{channel}{ext}", tokens
            )
            chans = tuple((token_map or {}).get(t) or CHANNEL_ALIASES.get(t.upper(), t) for t in chan_tokens)
        else:
            multi = sorted(
                p
                for p in root.iterdir()
                if _is_zarr(p) or (p.is_file() and p.suffix.lower() in TIFF_SUFFIXES)
            )
            if not multi:
                raise ReadError(
                    f"{root}: unknown layout: no TIFF/OME-TIFF/OME-Zarr fields and no <field>_<channel> files"
                )
            fields = [p.name.split(".")[0] for p in multi]
            files = [(p,) for p in multi]
            _, names = _read_multichannel(multi[0], header_only=True)
            chans = tuple(channels) if channels else names
        meta = self._metadata(
            fields, experiment or root.name, plate, metadata_csv
        )
        keep = meta.pop("_index").to_numpy()
        self._has_csv = metadata_csv is not None
        super().__init__(
            meta,
            chans,
            [files[k] for k in keep],
            source=metadata_csv or root,
            **scaling,
        )

    def row_label(self, i: int) -> str:
        if self._has_csv:
            return super().row_label(i)
        return f"field {self.metadata[FIELD].iloc[i]!r}, pseudo-well {self.metadata[S.WELL].iloc[i]}"

    def _read_raw(self, i: int) -> np.ndarray:
        paths = self.path(i)
        if self.per_channel:
            return stack_planes([self.read_plane(p) for p in paths], paths, rescale_uint8=self.rescale_uint8)
        if not is_url(paths[0]) and not paths[0].exists():  # a remote one is found missing when read
            raise ReadError(f"{paths[0]}: file not found")
        data, _ = _read_multichannel(paths[0])
        return data

    @staticmethod
    def _looks_per_channel(root: Path) -> bool:
        groups: dict[str, set[str]] = {}
        first = None
        for p in sorted(root.iterdir()):
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and "_" in p.stem:
                field, token = p.stem.rsplit("_", 1)
                groups.setdefault(field, set()).add(token)
                first = first or p
        sets = {frozenset(s) for s in groups.values()}
        if not (len(sets) == 1 and 1 < len(next(iter(sets))) <= 8):
            return False
        # plateA_f1.tif, plateA_f2.tif may also be two multi-channel fields: the files must hold one plane
        if first.suffix.lower() in TIFF_SUFFIXES:
            _, names = _read_multichannel(first, header_only=True)
            return len(names) == 1
        return True

    @staticmethod
    def _per_channel_files(root: Path, pattern: str, tokens: list[str] | None):
        candidates = [p for p in (root.rglob("*") if "/" in pattern else root.iterdir()) if p.is_file()]
        if "{ext}" in pattern:
            exts = sorted({p.suffix for p in candidates if p.suffix.lower() in IMAGE_SUFFIXES})
            if len(exts) != 1:
                raise ReadError(f"{root}: expected image files of one type, found extensions {exts}")
            pattern = pattern.replace("{ext}", exts[0])
        rx = _pattern_regex(pattern, tokens)
        found: dict[str, dict[str, Path]] = {}
        for p in candidates:
            m = rx.match(p.relative_to(root).as_posix())
            if m:
                found.setdefault(m.group("field"), {})[m.group("channel")] = p
        if not found:
            raise ReadError(f"{root}: no file matches the pattern {pattern!r}")
        chan_tokens = tokens or sorted({t for d in found.values() for t in d})
        fields = sorted(found)
        # A missing channel file stays in the list: reading it raises an error naming it (or --skip-bad skips it).
        files = [
            tuple(found[f].get(t, root / pattern.format(field=f, channel=t)) for t in chan_tokens)
            for f in fields
        ]
        return fields, chan_tokens, files

    @staticmethod
    def _metadata(fields: list[str], experiment: str, plate: str, csv) -> pd.DataFrame:
        meta = pd.DataFrame(
            {
                S.EXPERIMENT: experiment,
                S.PLATE: str(plate),
                S.WELL: [pseudo_well(k) for k in range(len(fields))],
                S.SITE: 1,
                S.PERTURBATION: S.UNKNOWN,
                S.PERTURBATION_TYPE: S.UNKNOWN,
                S.IS_CONTROL: False,
                FIELD: fields,
                "_index": np.arange(len(fields)),
            }
        )
        if csv is None:
            return meta
        if not csv.is_file():
            raise ReadError(f"{csv}: metadata CSV not found")
        user = read_metadata_csv(csv).rename(
            columns={"field": FIELD}
        )
        if FIELD not in user.columns:
            raise ReadError(
                f"{csv}: needs a {FIELD} (or field) column naming each image field; have {list(user.columns)}"
            )
        known = dict(zip(fields, range(len(fields)), strict=True))
        for row, f in enumerate(user[FIELD], start=1):
            if f not in known:
                raise ReadError(
                    f"{csv}: row {row}, column {FIELD}: no image for field {f!r} (fields found: {fields[:5]}...)"
                )
        base = meta.set_index(FIELD).loc[user[FIELD]].reset_index()
        for col in user.columns:
            if col != FIELD:
                base[col] = user[col].to_numpy()
        return base


def _read_multichannel(path: Path, header_only: bool = False) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """(C, H, W) data (None when ``header_only``) and channel names of a multi-channel file."""
    try:
        if _is_zarr(path):
            return _read_zarr(path, header_only)
        import tifffile

        # A remote file is read whole, then parsed from memory (tifffile reads local paths or file objects).
        with tifffile.TiffFile(io.BytesIO(read_bytes(path)) if is_url(path) else path) as tif:
            series = tif.series[0]
            axes = series.axes.upper()
            names = _ome_channel_names(tif.ome_metadata) if tif.is_ome else []
            data = None if header_only else series.asarray()
            shape = series.shape
    except ReadError:
        raise
    except FileNotFoundError as e:
        raise ReadError(f"{path}: file not found") from e
    except Exception as e:
        raise ReadError(f"{path}: cannot decode image ({type(e).__name__}: {e})") from e
    chan_axis = next((a for a in "CSIQ" if a in axes), None)
    n_ch = shape[axes.index(chan_axis)] if chan_axis else 1
    names = tuple(names) if len(names) == n_ch else tuple(f"C{k}" for k in range(n_ch))
    if data is None:
        return None, names
    return _to_cyx(data, axes, chan_axis, path), names


def _to_cyx(data: np.ndarray, axes: str, chan_axis: str | None, path: Path) -> np.ndarray:
    for ax, reduce in (("T", "first"), ("Z", "max")):
        if ax in axes:
            i = axes.index(ax)
            data = data.take(0, axis=i) if reduce == "first" else data.max(axis=i)
            axes = axes[:i] + axes[i + 1 :]
    if chan_axis is None:
        data, axes = data[None], "C" + axes
        chan_axis = "C"
    order = [axes.index(chan_axis), axes.index("Y"), axes.index("X")]
    if len(axes) != 3:
        raise ReadError(f"{path}: cannot map axes {axes!r} onto (C, Y, X)")
    return np.transpose(data, order)


def _ome_channel_names(xml: str | None) -> list[str]:
    if not xml:
        return []
    root = ET.fromstring(xml)
    return [
        el.get("Name") or el.get("ID", "")
        for el in root.iter()
        if el.tag.endswith("}Channel") or el.tag == "Channel"
    ]


def _read_zarr(path: Path, header_only: bool) -> tuple[np.ndarray | None, tuple[str, ...]]:
    import zarr

    remote = {"storage_options": dict(path.storage_options)} if is_url(path) else {}
    node = zarr.open(str(path), mode="r", **remote)
    if isinstance(node, zarr.Array):
        arr, axes, labels = node, "CYX"[-node.ndim :] if node.ndim <= 3 else None, []
        if axes is None:
            raise ReadError(f"{path}: a bare Zarr array of {node.ndim} dims has no axis names")
    else:
        attrs = dict(node.attrs)
        ome = attrs.get("ome", attrs)  # OME-Zarr 0.5 nests under "ome"; 0.4 puts the keys at the top
        if "multiscales" not in ome:
            raise ReadError(f"{path}: a Zarr group without OME 'multiscales' metadata")
        ms = ome["multiscales"][0]
        axes = "".join(
            (a["name"] if isinstance(a, dict) else a).upper() for a in ms.get("axes", ["c", "y", "x"])
        )
        arr = node[ms["datasets"][0]["path"]]
        labels = [c.get("label", "") for c in ome.get("omero", {}).get("channels", [])]
    chan_axis = "C" if "C" in axes else None
    n_ch = arr.shape[axes.index("C")] if chan_axis else 1
    names = tuple(labels) if len(labels) == n_ch and all(labels) else tuple(f"C{k}" for k in range(n_ch))
    if header_only:
        return None, names
    return _to_cyx(np.asarray(arr[...]), axes, chan_axis, path), names
