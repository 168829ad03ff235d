"""What every reader returns: a :class:`Screen` (metadata + channel-named uint8 field stacks).

A reader only has to say, for field i, which file(s) hold it and how to turn them into a raw
(C, H, W) array; the base class validates the metadata once, converts to uint8 and checks the
shapes, so every layout fails the same way: with an error that names the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cellmae.data import schema as S
from cellmae.data.readers.storage import compression_of, denied, is_url, locate, read_bytes, unreachable
from cellmae.data.scaling import DEFAULT_HIGH_PCT, DEFAULT_LOW_PCT, to_uint8

TIFF_SUFFIXES = (".tif", ".tiff")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".jp2", ".j2k", *TIFF_SUFFIXES)


class ReadError(ValueError):
    """An image or metadata file cannot be used; the message starts with the file's path."""


# Magic numbers: the decoder is chosen from the file's first bytes, never from its name.
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_JP2_MAGIC = (b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xffO\xffQ")  # JP2 box / raw J2K codestream
_NPY_MAGIC = b"\x93NUMPY"


def decode_image(data: bytes, path) -> np.ndarray:
    """Decode image bytes by their content: TIFF, JPEG 2000, NumPy ``.npy`` (no pickles), else Pillow."""
    import io

    try:
        if data.startswith(_TIFF_MAGIC):
            import tifffile

            arr = tifffile.imread(io.BytesIO(data))
        elif data.startswith(_JP2_MAGIC):
            import imagecodecs

            arr = imagecodecs.jpeg2k_decode(data)
        elif data.startswith(_NPY_MAGIC):
            arr = np.load(io.BytesIO(data), allow_pickle=False)  # never unpickle a downloaded file
        else:
            from PIL import Image

            with Image.open(io.BytesIO(data)) as im:
                im.load()  # force a full decode here so truncation is caught with the file's name
                arr = np.asarray(im)
    except Exception as e:  # decoders raise many types (OSError, ValueError, SyntaxError, ...)
        raise ReadError(f"{path}: cannot decode image ({type(e).__name__}: {e})") from e
    if arr.size == 0:
        raise ReadError(f"{path}: empty image")
    return arr


def read_plane(path, cache_dir=None) -> np.ndarray:
    """Decode one image file (local or URL) into an array (2-D for a single plane), naming the file on failure."""
    path = locate(path)
    try:
        data = read_bytes(path, cache_dir)
    except FileNotFoundError as e:
        raise ReadError(f"{path}: file not found") from e
    except IsADirectoryError as e:
        raise ReadError(f"{path}: is a folder, expected an image file") from e
    except OSError as e:
        if isinstance(e, PermissionError) and is_url(path):
            raise ReadError(denied(path)) from e
        raise ReadError(unreachable(path, e) or f"{path}: cannot read ({type(e).__name__}: {e})") from e
    except Exception as e:
        message = unreachable(path, e)
        if message is None:
            raise
        raise ReadError(message) from e
    return decode_image(data, path)


def read_metadata_csv(path, what: str = "metadata CSV", *, nrows: int | None = None) -> pd.DataFrame:
    """A metadata table as strings (local or URL, plain or gzip); an unreadable, empty or header-only
    file is a ReadError naming it."""
    import io

    path = locate(path)
    try:
        data = read_bytes(path)
        table = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, na_values=[""], nrows=nrows,
                            compression=compression_of(data))
    except FileNotFoundError as e:
        raise ReadError(f"{path}: {what} not found") from e
    except PermissionError as e:
        raise ReadError(denied(path)) from e
    except Exception as e:  # pandas raises ParserError, EmptyDataError, UnicodeDecodeError, OSError ...
        raise ReadError(f"{path}: cannot read {what} ({type(e).__name__}: {e})") from e
    if nrows is None and table.empty:
        raise ReadError(f"{path}: {what} has a header but no rows; list one row per field (site) in it")
    return table


def stack_planes(planes: Sequence[np.ndarray], paths: Sequence[Path], *, rescale_uint8: bool = False) -> np.ndarray:
    """Stack single-channel planes into (C, H, W); a plane of another size or rank names its file.

    A field mixing 8-bit planes with 16-bit/float ones is refused (unless ``rescale_uint8``, where every
    plane is stretched anyway): stacking promotes the 8-bit planes, which would then be percentile-
    rescaled with the others instead of kept as they are, silently.
    """
    first = planes[0]
    for plane, path in zip(planes, paths, strict=True):
        if plane.ndim != 2:
            raise ReadError(f"{path}: expected a single-channel 2-D image, got shape {plane.shape}")
        if plane.shape != first.shape:
            raise ReadError(
                f"{path}: image size {plane.shape} differs from {first.shape} of {paths[0]} (same field)"
            )
    is8 = [p.dtype == np.uint8 for p in planes]
    if any(is8) and not all(is8) and not rescale_uint8:
        majority8 = sum(is8) * 2 >= len(is8)
        odd = [k for k, b in enumerate(is8) if b != majority8]
        ref = is8.index(majority8)
        raise ReadError(
            f"{paths[odd[0]]}: {planes[odd[0]].dtype} plane in a field whose other planes are {planes[ref].dtype} "
            f"(e.g. {paths[ref]}; {len(odd)} odd plane(s)); cellmae keeps 8-bit planes unscaled and will not mix "
            "them with planes it must rescale: convert the odd file(s) to the same bit depth, pass "
            "--rescale-uint8 to scale every plane, or --skip-bad to skip the field"
        )
    return np.stack(planes, axis=0)


class Screen:
    """A screen: one metadata row per field (site) and a channel-named image stack per field.

    Subclasses set ``_files`` (one tuple of paths per field) and implement :meth:`_read_raw`.
    ``low_pct``/``high_pct`` drive the per-channel percentile scaling of non-uint8 images
    (:func:`cellmae.data.scaling.to_uint8`); ``rescale_uint8`` applies it to 8-bit images too.
    """

    layout = "base"

    def __init__(
        self,
        metadata: pd.DataFrame,
        channels: Sequence[str],
        files: Sequence[Sequence[Path]],
        *,
        source: str | Path,
        low_pct: float = DEFAULT_LOW_PCT,
        high_pct: float = DEFAULT_HIGH_PCT,
        rescale_uint8: bool = False,
        cache_dir: str | Path | None = None,
        rows: Sequence[int] | None = None,
    ) -> None:
        self.source = locate(source)
        self.channels: tuple[str, ...] = S.validate_channels(channels, source=str(source))
        self.metadata: pd.DataFrame = S.validate_metadata(metadata.reset_index(drop=True), source=source)
        self._files: list[tuple[Path, ...]] = [tuple(locate(p) for p in f) for f in files]
        # The metadata row (1-based, in the reader's table) behind each field, for error messages.
        self._rows = list(rows) if rows is not None else None
        self.cache_dir = cache_dir
        self.spec = None  # the ScreenSpec it was opened with (set by open_screen)
        if len(self._files) != len(self.metadata):
            raise ValueError(f"{source}: {len(self._files)} fields but {len(self.metadata)} metadata rows")
        if not self._files:
            raise ReadError(f"{source}: the screen has no fields")
        self.low_pct, self.high_pct, self.rescale_uint8 = low_pct, high_pct, rescale_uint8

    def __len__(self) -> int:
        return len(self._files)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.source)!r}, fields={len(self)}, channels={self.channels})"

    def path(self, i: int) -> tuple[Path, ...]:
        """The file(s) behind field ``i``."""
        return self._files[i]

    def row_label(self, i: int) -> str:
        """Where field ``i`` is described: ``row N of SOURCE``."""
        row = self._rows[i] if self._rows is not None else i + 1
        return f"row {row} of {self.source}"

    def read_plane(self, path) -> np.ndarray:
        """One image file of this screen (through its local cache, if any)."""
        return read_plane(path, self.cache_dir)

    def missing_files(self) -> list[tuple[int, Path]]:
        """(field index, path) of every file the metadata names but the disk lacks."""
        listed: dict[str, set[str] | None] = {}

        def there(p) -> bool:
            if not is_url(p):
                return p.exists()
            # One listing per remote folder instead of one request per file (a JUMP plate has ~20k files).
            parent = str(p.parent)
            if parent not in listed:
                try:
                    listed[parent] = {str(q).rstrip("/") for q in p.parent.iterdir()}
                except (FileNotFoundError, NotImplementedError, OSError):
                    listed[parent] = None  # cannot list (e.g. plain https): ask per file
            names = listed[parent]
            return p.exists() if names is None else str(p).rstrip("/") in names

        return [(i, p) for i, files in enumerate(self._files) for p in files if not there(p)]

    def check_files(self) -> None:
        """Fail fast, before a long job, when a metadata row has no image: names the file and row."""
        missing = self.missing_files()
        if missing:
            i, p = missing[0]
            more = "".join(f", {q} (row {j + 1})" for j, q in missing[1:5]) + (", ..." if len(missing) > 5 else "")
            raise ReadError(
                f"{p}: file not found (metadata row {i + 1} of {self.source}; {len(missing)} missing file(s) in all"
                f"{more}); list them all with `cellmae shards inspect {self.source} --check-files`, restore them, "
                "or pass --skip-bad to skip their fields"
            )

    def subset(self, wells: Iterable[tuple[str, str, str]]) -> Screen:
        """The fields of the listed (experiment, plate, well) keys, in this screen's order, read
        through this screen (same channels and scaling). Raises ValueError when none is here."""
        from cellmae.data.readers.subset import WellSubsetScreen

        return WellSubsetScreen(self, wells)

    def read_raw(self, i: int) -> np.ndarray:
        """Field ``i`` as stored (any dtype), (C, H, W) in :attr:`channels` order."""
        return self._read_raw(i)

    def _read_raw(self, i: int) -> np.ndarray:
        raise NotImplementedError

    def read_field(self, i: int) -> np.ndarray:
        """Field ``i`` as uint8 (C, H, W), channels in :attr:`channels` order."""
        if not 0 <= i < len(self):
            raise IndexError(f"field {i} out of range for a screen of {len(self)} fields")
        try:
            raw = self._read_raw(i)
        except ReadError as e:
            if self.row_label(i) in str(e):
                raise
            raise ReadError(f"{e} ({self.row_label(i)})") from e
        where = ", ".join(map(str, self.path(i)))
        if raw.ndim != 3 or raw.shape[0] != len(self.channels):
            raise ReadError(
                f"{where}: expected {len(self.channels)} channels {self.channels}, got an array of shape {raw.shape} "
                f"({self.row_label(i)})"
            )
        try:
            return np.ascontiguousarray(
                to_uint8(raw, self.low_pct, self.high_pct, rescale_uint8=self.rescale_uint8)
            )
        except ValueError as e:
            raise ReadError(f"{where}: {e} ({self.row_label(i)})") from e

    def summary(self) -> dict:
        """Counts a user checks first: fields, wells, plates, perturbations, channels, image size."""
        m = self.metadata
        # the first field whose files are all there: a missing plane is check_files()' to report
        complete = next((i for i in range(len(self)) if all(p.exists() for p in self.path(i))), None)
        shape = list(self.read_field(complete).shape[1:]) if complete is not None else None
        return {
            "layout": self.layout,
            "source": str(self.source),
            "fields": len(self),
            "channels": list(self.channels),
            "field_shape": shape,
            "experiments": int(m[S.EXPERIMENT].nunique()),
            "plates": int(m[[S.EXPERIMENT, S.PLATE]].drop_duplicates().shape[0]),
            "wells": int(m[list(S.WELL_KEYS)].drop_duplicates().shape[0]),
            "perturbations": int(m[S.PERTURBATION].nunique()),
            "control_fields": int(m[S.IS_CONTROL].sum()),
            "perturbation_types": {k: int(v) for k, v in m[S.PERTURBATION_TYPE].value_counts().items()},
        }
