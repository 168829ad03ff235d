"""RxRx3-core as published: Parquet shards of JPEG-2000 planes plus a metadata CSV.

Hugging Face ``recursionpharma/rxrx3-core``: ``data/train-*.parquet`` with a ``__key__`` string and a
``jp2`` image column (Hugging Face's image struct ``{bytes, path}``, or plain bytes), one row per
plane, and ``metadata_rxrx3_core.csv`` with one row per well (``well_id, experiment_name, plate,
address, gene, treatment, SMILES, concentration, perturbation_type, cell_type, well_type_label``).
A key is ``{experiment_name}/Plate{plate}/{address}_s{site}_{channel}``, e.g.
``compound-001/Plate1/AA15_s1_1`` (the dataset card's viewer shows this form; channels 1..6).
The same keys as files (``ROOT/compound-001/Plate1/AA15_s1_1.jp2``) are read too.

Sites are found from the keys; metadata maps onto the schema as for RxRx (docs/CONTRACTS.md s.1);
``EMPTY_control`` (RxRx3-core's control name) marks a negative control.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from cellmae.data import schema as S
from cellmae.data.readers.base import ReadError, Screen, decode_image, read_metadata_csv, stack_planes
from cellmae.data.readers.rxrx import _col, _schema_frame
from cellmae.data.readers.storage import filesystem_of, is_url, with_options

KEY_RE = re.compile(r"^(?P<exp>[^/]+)/Plate(?P<plate>[^/]+)/(?P<well>[A-Za-z]{1,2}\d{1,2})_s(?P<site>\d+)_(?P<ch>\d+)$")
KEY, IMAGE = "__key__", "jp2"
_PARQUET_MAGIC = b"PAR1"
_JP2_SUFFIXES = (".jp2", ".j2k")


class ShardMember:
    """One plane inside a Parquet shard: (file, key, row); printed as ``FILE[KEY]`` in messages."""

    def __init__(self, shard, key: str, row: int | None, group: int = 0, offset: int = 0) -> None:
        self.shard, self.key, self.row, self.group, self.offset = shard, key, row, group, offset
        self.name = key.rsplit("/", 1)[-1]

    def exists(self) -> bool:
        return self.row is not None

    def __str__(self) -> str:
        return f"{self.shard}[{self.key}]"

    __repr__ = __str__


def _files(root, suffixes: tuple[str, ...]) -> list:
    if root.is_file():
        return [root] if str(root).lower().endswith(suffixes) else []
    return sorted((p for p in root.rglob("*") if str(p).lower().endswith(suffixes) and p.is_file()), key=str)


def _open(path, cache_dir=None):
    if not is_url(path):
        return open(path, "rb")
    return filesystem_of(path, cache_dir).open(path.path, "rb")


def _top_shards(root) -> list:
    """Parquet files in ``root`` or ``root/data`` (the Hugging Face layout): enough to recognise the layout
    without walking a large folder."""
    if root.is_file():
        return [root]
    found = []
    for folder in (root, root / "data"):
        if folder.is_dir():
            found += sorted((p for p in folder.iterdir() if str(p).lower().endswith(".parquet")), key=str)
    return found


def is_rxrx3_core(root) -> bool:
    """Parquet shards with ``__key__`` + ``jp2`` columns (the first one is checked), or, beside an RxRx3-core
    metadata CSV (``experiment_name``, ``address``), key-named ``.jp2`` planes."""
    import pyarrow.parquet as pq

    shards = _top_shards(root)
    if shards:
        try:
            with _open(shards[0]) as f:
                return {KEY, IMAGE} <= set(pq.read_schema(f).names)
        except Exception:
            return False
    if root.is_dir():
        try:
            find_core_metadata(root)
        except ReadError:
            return False
        return any(True for _ in root.glob("*/Plate*/*_s*_*.jp2"))
    return False


def find_core_metadata(root):
    """The CSV beside the shards with ``experiment_name``/``plate``/``address`` columns (one row per well)."""
    folder = root.parent if root.is_file() else root
    found = []
    for p in sorted(folder.iterdir(), key=str):
        if str(p).lower().endswith((".csv", ".csv.gz")) and p.is_file():
            cols = set(read_metadata_csv(p, "CSV", nrows=0).columns)
            if {"plate"} <= cols and cols & {"address", "well"} and cols & {"experiment_name", "experiment"}:
                found.append(p)
    if len(found) != 1:
        raise ReadError(f"{folder}: {'no' if not found else len(found)} RxRx3-core metadata CSV(s) (experiment_name, "
                        "plate, address columns) found beside the images; pass it with --metadata-csv")
    return found[0]


class RxRx3CoreScreen(Screen):
    """RxRx3-core Parquet/jp2 shards (or key-named .jp2 files) + metadata; see the module docstring."""

    layout = "rxrx3-core"

    def __init__(self, root, *, metadata_csv=None, channels=None, storage_options: dict | None = None,
                 **scaling) -> None:
        root = with_options(root, storage_options)
        if not root.exists():
            raise ReadError(f"{root}: no such file or folder")
        csv = with_options(metadata_csv, storage_options) if metadata_csv else find_core_metadata(root)
        raw = read_metadata_csv(csv)
        exp_c, well_c, plate_c = _col(raw, "experiment", csv), _col(raw, "well", csv), _col(raw, "plate", csv)
        raw = raw.rename(columns={exp_c: "experiment", well_c: "well", plate_c: "plate"})
        self._cache_dir = scaling.get("cache_dir")
        planes = self._index(root)
        n_ch = max(int(c) for sites in planes.values() for c in sites)
        chans = tuple(channels) if channels else S.RXRX_CHANNELS[:n_ch]
        if n_ch > len(chans):
            raise ReadError(f"{root}: planes are numbered up to {n_ch} but only {len(chans)} channel names {chans}")
        rows, files, csv_rows = [], [], []
        by_well: dict[tuple, list[int]] = {}
        for (exp, plate, well, site) in planes:
            by_well.setdefault((exp, plate, well), []).append(site)
        for n, r in enumerate(raw.to_dict("records"), start=1):
            key = (r["experiment"], str(r["plate"]), r["well"].upper())
            sites = sorted(by_well.pop(key, []))
            if not sites:
                raise ReadError(f"{csv}: row {n}: no image for {key[0]}/Plate{key[1]}/{key[2]} in {root} (download the "
                                "shards holding it, or drop the row from the metadata CSV)")
            for site in sites:
                got = planes[(*key, site)]
                prefix = f"{key[0]}/Plate{key[1]}/{key[2]}_s{site}_"
                files.append(tuple(got.get(k, ShardMember(root, f"{prefix}{k}", None)) for k in range(1, len(chans) + 1)))
                rows.append({**r, "site": str(site)})
                csv_rows.append(n)
        if by_well:
            exp, plate, well = next(iter(by_well))
            raise ReadError(f"{root}: images of {exp}/Plate{plate}/{well} (and {len(by_well) - 1} more well(s)) have no "
                            f"row in {csv}; add them to the metadata CSV")
        meta = _schema_frame(pd.DataFrame(rows), csv)
        empty = meta[S.PERTURBATION].str.upper().eq("EMPTY_CONTROL")
        meta.loc[empty, S.IS_CONTROL] = True
        super().__init__(meta, chans, files, source=csv, rows=csv_rows, **scaling)

    def _index(self, root) -> dict[tuple, dict[int, object]]:
        """(experiment, plate, WELL, site) -> {channel: ShardMember or file} for every plane found."""
        import pyarrow.parquet as pq

        planes: dict[tuple, dict[int, object]] = {}

        def add(key: str, where, source) -> None:
            m = KEY_RE.match(key)
            if m is None:
                raise ReadError(f"{where}: key {key!r} is not {{experiment}}/Plate{{plate}}/{{well}}_s{{site}}_{{channel}}")
            site = (m["exp"], m["plate"], m["well"].upper(), int(m["site"]))
            planes.setdefault(site, {})[int(m["ch"])] = source

        for shard in _files(root, (".parquet",)):
            with _open(shard, self._cache_dir) as f:
                if f.read(4) != _PARQUET_MAGIC:
                    raise ReadError(f"{shard}: not a Parquet file (no PAR1 magic)")
                f.seek(0)
                try:
                    pf = pq.ParquetFile(f)
                    if not {KEY, IMAGE} <= set(pf.schema_arrow.names):
                        raise ReadError(f"{shard}: needs columns {KEY!r} and {IMAGE!r}; has {pf.schema_arrow.names}")
                    keys = pf.read(columns=[KEY]).column(KEY).to_pylist()
                    sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)]
                except ReadError:
                    raise
                except Exception as e:
                    raise ReadError(f"{shard}: cannot read Parquet ({type(e).__name__}: {e})") from e
            starts = np.cumsum([0, *sizes])
            for row, key in enumerate(keys):
                g = int(np.searchsorted(starts, row, side="right") - 1)
                add(key, f"{shard}: row {row + 1}", ShardMember(shard, key, row, g, row - int(starts[g])))
        base = root.parent if root.is_file() else root
        for p in _files(root, _JP2_SUFFIXES):
            rel = str(p)[len(str(base)):].lstrip("/")
            add(rel.rsplit(".", 1)[0], p, p)
        if not planes:
            raise ReadError(f"{root}: no RxRx3-core Parquet shards ({KEY}, {IMAGE}) or .jp2 planes found")
        return planes

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_groups"] = {}  # open row groups stay in the process that read them
        return state

    def _member_bytes(self, m: ShardMember) -> bytes:
        """The jp2 bytes of one Parquet row; its row group is kept while fields read from it."""
        import pyarrow.parquet as pq

        if m.row is None:
            raise ReadError(f"{m}: plane not found in any shard")
        groups = self.__dict__.setdefault("_groups", {})
        key = (str(m.shard), m.group)
        if key not in groups:
            groups.clear()  # keys are sorted by well in the shards, so fields read one row group at a time
            with _open(m.shard, self._cache_dir) as f:
                groups[key] = pq.ParquetFile(f).read_row_group(m.group, columns=[IMAGE]).column(IMAGE)
        value = groups[key][m.offset].as_py()
        data = value.get("bytes") if isinstance(value, dict) else value
        if not isinstance(data, bytes | bytearray) or not data:
            raise ReadError(f"{m}: row {m.row + 1} holds no image bytes")
        return bytes(data)

    def read_plane(self, path) -> np.ndarray:
        if isinstance(path, ShardMember):
            return decode_image(self._member_bytes(path), path)
        return super().read_plane(path)

    def _read_raw(self, i: int) -> np.ndarray:
        paths = self.path(i)
        return stack_planes([self.read_plane(p) for p in paths], paths, rescale_uint8=self.rescale_uint8)
