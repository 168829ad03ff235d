"""The screen spec: every reader option that decides which pixels a stage sees, recorded and reused.

``cellmae shards build`` records it in the shard set's settings (``manifest.json`` and
``cellmae_shards.json``, key ``screen_spec``), ``cellmae embed`` in ``embed_config.json`` and its
manifest; ``cellmae embed --screen-spec`` (or the model's training run) reads it back, so training
and embedding open the screen the same way. Credentials are never recorded: storage options
such as ``key``/``secret``/``token`` are dropped (their names are kept, to say what to pass again).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from cellmae.data.readers.storage import is_url, public_options, secret_option_names
from cellmae.data.scaling import DEFAULT_HIGH_PCT, DEFAULT_LOW_PCT
from cellmae.layout import EMBED_CONFIG_FILE, SHARDS_INFO_FILE
from cellmae.utils.errors import InputError

SPEC_KEY = "screen_spec"
# Which layouts take which option (the others are refused, naming the option).
_LAYOUT_OPTIONS = {
    "pattern": ("generic",),
    "experiment": ("generic",),
    "plate": ("generic",),
    "metadata_csv": ("generic", "rxrx", "rxrx3-core"),
    "perturbation_csv": ("cellpainting",),
    "illum": ("cellpainting",),
}


@dataclass
class ScreenSpec:
    """How a screen is opened; :meth:`reader_options` are the keyword arguments of ``open_screen``."""

    layout: str = "auto"
    channels: list[str] | dict[str, str] | None = None
    pattern: str | None = None
    experiment: str | None = None
    plate: str | None = None
    metadata_csv: str | None = None
    perturbation_csv: list[str] = field(default_factory=list)
    illum: bool | None = None  # None: apply when the load_data CSV has Illum columns
    low_pct: float = DEFAULT_LOW_PCT
    high_pct: float = DEFAULT_HIGH_PCT
    rescale_uint8: bool = False
    storage_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("metadata_csv",):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, _where(value))
        pcsv = self.perturbation_csv
        self.perturbation_csv = [_where(p) for p in ([pcsv] if isinstance(pcsv, str | Path) else pcsv or [])]
        if isinstance(self.channels, tuple):
            self.channels = list(self.channels)

    def updated(self, **overrides: Any) -> ScreenSpec:
        """A copy with every non-None override applied (storage options are merged)."""
        given = {k: v for k, v in overrides.items() if v is not None and v != [] and v != {}}
        if "storage_options" in given:
            given["storage_options"] = {**self.storage_options, **given["storage_options"]}
        return replace(self, **given)

    def reader_options(self, layout: str) -> dict[str, Any]:
        """Keyword arguments for the ``layout`` reader; an option it does not take is an InputError."""
        opts: dict[str, Any] = {"low_pct": self.low_pct, "high_pct": self.high_pct,
                                "rescale_uint8": self.rescale_uint8, "storage_options": dict(self.storage_options)}
        if self.channels:
            opts["channels"] = self.channels
        for key, layouts in _LAYOUT_OPTIONS.items():
            value = getattr(self, key)
            if value is None or value == []:
                continue
            if layout not in layouts:
                raise InputError(f"--{key.replace('_', '-')}: only for layout(s) {list(layouts)}, but the screen is "
                                 f"read as {layout!r}; drop the option or pass --layout")
            opts[key] = value
        return opts

    def record(self) -> dict[str, Any]:
        """JSON-ready, without credential values (see the module docstring)."""
        out = asdict(self)
        out["storage_options"] = public_options(self.storage_options)
        secrets = secret_option_names(self.storage_options)
        if secrets:
            out["storage_options_not_recorded"] = secrets
        return out

    @classmethod
    def from_record(cls, record: dict[str, Any], *, source: str = "screen spec") -> ScreenSpec:
        if not isinstance(record, dict):
            raise InputError(f"{source}: a screen spec must be a JSON object, got {type(record).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(record) - known - {"storage_options_not_recorded"})
        if unknown:
            raise InputError(f"{source}: unknown screen spec key(s) {unknown}; known: {sorted(known)}")
        return cls(**{k: v for k, v in record.items() if k in known})


def _where(value) -> str:
    """A file named in a spec, as text that works from any folder: URLs as given, local paths absolute."""
    text = str(value)
    return text if is_url(text) else str(Path(text).resolve())


def load_spec(path: str | Path) -> ScreenSpec:
    """The spec recorded in a JSON file, a shard folder or an embed output folder."""
    path = Path(path)
    if path.is_dir():
        if (path / SHARDS_INFO_FILE).is_file():
            from cellmae.data.shard_reader import read_shard_info

            record, where = read_shard_info(path).get(SPEC_KEY), path / SHARDS_INFO_FILE
        elif (path / EMBED_CONFIG_FILE).is_file():
            record, where = _json(path / EMBED_CONFIG_FILE).get(SPEC_KEY), path / EMBED_CONFIG_FILE
        else:
            raise InputError(f"{path}: --screen-spec takes a spec JSON file, a shard folder ({SHARDS_INFO_FILE}) or an "
                             f"embed folder ({EMBED_CONFIG_FILE}); this folder has neither")
        if record is None:
            raise InputError(f"{where}: records no screen spec (written before cellmae recorded one); rebuild it, or "
                             "give the reader options (--layout, --channels, ...) instead")
        return ScreenSpec.from_record(record, source=str(where))
    if not path.is_file():
        raise InputError(f"--screen-spec {path}: no such file or folder")
    record = _json(path)
    return ScreenSpec.from_record(record.get(SPEC_KEY, record) if isinstance(record, dict) else record,
                                  source=str(path))


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: cannot read this JSON file ({type(e).__name__}: {e})") from e
