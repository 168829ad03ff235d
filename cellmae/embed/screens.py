"""The screen to embed, opened with the reader options it was trained with (the screen spec).

Where the spec comes from, first match wins: ``screen_spec`` (a :class:`ScreenSpec`, its JSON record,
a spec file, a shard folder or an embed folder), else the model's training run (``config.json`` ->
``train.shards`` -> the shard set's recorded spec), else the defaults. Options given explicitly
(``spec_overrides``, the CLI's reader options) are applied over it.

A training run's spec is applied whole when the screen embedded is the one trained on; for another
screen only its pixel scaling (percentiles, ``rescale_uint8``) is, since its layout, platemaps and
file pattern describe the training screen. Pass that run as ``--screen-spec`` to apply it all.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from cellmae.data.readers.storage import is_url
from cellmae.data.spec import ScreenSpec, load_spec

log = logging.getLogger(__name__)
_PIXEL_FIELDS = ("low_pct", "high_pct", "rescale_uint8")


def as_spec(value: Any) -> ScreenSpec | None:
    """A ScreenSpec from a spec, its record (dict), or a path (spec JSON, shard folder, embed folder,
    or a training run / model folder)."""
    if value is None or isinstance(value, ScreenSpec):
        return value
    if isinstance(value, dict):
        return ScreenSpec.from_record(value)
    run = _training_shards(value)
    return load_spec(run if run is not None else value)


def _model_dir(model_source: Any) -> Path | None:
    if not isinstance(model_source, str | Path):
        return None
    text = str(model_source).removeprefix("random-init:")
    path = Path(text)
    return path if path.is_dir() else None


def _training_shards(model_dir: Any) -> Path | None:
    """The shard folder a cellmae training run recorded in its config.json (train.shards), if any."""
    from cellmae.layout import MODEL_CONFIG_FILE

    folder = _model_dir(model_dir)
    if folder is None or not (folder / MODEL_CONFIG_FILE).is_file():
        return None
    try:
        shards = json.loads((folder / MODEL_CONFIG_FILE).read_text()).get("train", {}).get("shards")
    except (OSError, ValueError, AttributeError):
        return None
    if not shards:
        return None
    for cand in (Path(shards), folder / shards, folder / Path(shards).name):
        if cand.is_dir():
            return cand
    return Path(shards)  # not found: load_spec names it


def _same_screen(screen: Any, source: str | None) -> bool:
    if source is None or not isinstance(screen, str | Path):
        return False
    if is_url(screen) or is_url(source):
        return str(screen).rstrip("/") in (source.rstrip("/"), source.rsplit("/", 1)[0])
    here, there = Path(screen).resolve(), Path(source).resolve()
    return here in (there, there.parent)


def training_spec(model_source: Any, screen: Any) -> tuple[ScreenSpec | None, str | None]:
    """(spec, note) from the model's training run; note says what was (not) applied and why."""
    shards = _training_shards(model_source)
    if shards is None:
        return None, None
    if not shards.is_dir():
        return None, f"screen spec: the training shards {shards} are not here; using the reader options given"
    from cellmae.data.shard_reader import read_shard_info

    info = read_shard_info(shards)
    if info.get("screen_spec") is None:
        return None, f"screen spec: {shards} records none (built before cellmae recorded it)"
    spec = ScreenSpec.from_record(info["screen_spec"], source=str(shards))
    if _same_screen(screen, info.get("source")):
        return spec, f"screen spec: the training run's, from {shards}"
    pixels = ScreenSpec(**{k: getattr(spec, k) for k in _PIXEL_FIELDS})
    return pixels, (f"screen spec: pixel scaling from {shards} (trained on {info.get('source')}, another screen); "
                    f"pass --screen-spec {shards} to apply all its reader options")


def open_embed_screen(screen: Any, *, layout: str = "auto", screen_spec: Any = None, model_source: Any = None,
                      spec_overrides: dict | None = None, cache_dir=None):
    """(screen object, note): ``screen`` opened as the module docstring says, or returned as it is."""
    if not isinstance(screen, str | Path):
        return screen, None
    from cellmae.data.readers import open_screen

    note = None
    spec = as_spec(screen_spec)
    if spec is not None:
        note = "screen spec: given"
    else:
        spec, note = training_spec(model_source, screen)
    spec = (spec or ScreenSpec()).updated(layout=None if layout == "auto" else layout, **(spec_overrides or {}))
    return open_screen(screen, spec=spec, cache_dir=cache_dir), note
