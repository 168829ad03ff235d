"""Model sources for featurization: what ``--model`` names, as the embed stage keeps it.

Resolution is :func:`cellmae.models.loader.load` (the one model loader; its docstring lists the
accepted forms); :class:`ModelSource` adds what the embed stage records with the embeddings.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cellmae.models.loader import HANDCRAFTED


@dataclass
class ModelSource:
    """A resolved source: the model (None for handcrafted), its kind and a name for output folders."""

    kind: str  # "cellmae" | "openphenom" | "random-init" | "timm" | "handcrafted" | "module"
    name: str
    model: Any | None
    spec: str
    weights: str | None = None  # the weights file, so a resume notices retrained weights

    def fingerprint(self) -> dict | None:
        """Size and modification time of the weights file (None for in-memory / random weights)."""
        if not self.weights:
            return None
        st = Path(self.weights).stat()
        return {"file": str(Path(self.weights).resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}

    def describe(self) -> dict:
        """JSON-able description stored with the embeddings (what produced them)."""
        cfg = getattr(self.model, "config", None)
        if cfg is not None and not isinstance(cfg, dict):
            try:
                from dataclasses import asdict

                cfg = asdict(cfg)
            except TypeError:
                cfg = str(cfg)
        return {"kind": self.kind, "name": self.name, "spec": self.spec, "config": _jsonable(cfg),
                "weights": self.fingerprint()}


def _jsonable(obj: Any) -> Any:
    try:
        json.dumps(obj)
        return obj
    except TypeError:
        if isinstance(obj, dict):
            return {str(k): _jsonable(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [_jsonable(v) for v in obj]
        return str(obj)


def resolve_source(
    source: Any,
    *,
    screen_channels: Sequence[str] | None = None,
    tile: int = 64,
    seed: int = 0,
) -> ModelSource:
    """Resolve ``source`` (a string spec, a path or an already-built model) to a :class:`ModelSource`.

    ``screen_channels`` and ``tile`` are needed only for timm backbones, whose first layer is
    built for the screen's channel count (and ViT position embeddings for the tile size).
    """
    from cellmae.models.loader import load

    model = load(source, channels=screen_channels, tile=tile, seed=seed)
    info = model.source_info
    return ModelSource(info.kind, info.name, None if info.kind == HANDCRAFTED else model, info.spec,
                       weights=info.weights)
