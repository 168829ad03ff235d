"""Model sources for featurization: what ``--model`` may name, resolved to a model object.

Accepted forms (checked in this order):

- ``handcrafted``                      the classical baseline (cellmae.embed.handcrafted)
- ``random-init:PRESET``               a cellmae preset with random weights (baseline of the same size)
- ``random-init:CHECKPOINT_DIR``       the architecture of a checkpoint, random weights
- ``timm:NAME`` / ``timm:NAME@FILE``   a timm backbone adapted to the screen's channel count;
                                       pretrained weights only from a local FILE (never downloaded)
- ``openphenom:FILE`` or a file path   an OpenPhenom-layout checkpoint (loaded with weights_only)
- a directory                          a cellmae checkpoint (model.safetensors + config.json)
- a bare name timm knows               as ``timm:NAME``
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HANDCRAFTED = "handcrafted"


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


def _random_init(target: str, seed: int):
    import torch

    from cellmae.models import create_model, list_models
    from cellmae.models.checkpoint import read_config
    from cellmae.models.registry import model_from_config

    torch.manual_seed(seed)  # the baseline must be the same model on every rank and every rerun
    if Path(target).is_dir():  # same architecture as a trained checkpoint, untrained weights
        return model_from_config(read_config(target)["config"])
    if target not in list_models():
        raise ValueError(f"random-init:{target}: unknown preset; known presets: {', '.join(list_models())}")
    return create_model(target)


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
    if not isinstance(source, str | Path):
        if not hasattr(source, "forward_features"):
            raise TypeError(f"model object {type(source).__name__} has no forward_features(...)")
        return ModelSource("module", type(source).__name__, source, spec=type(source).__name__)
    spec = str(source)
    if spec == HANDCRAFTED:
        return ModelSource("handcrafted", HANDCRAFTED, None, spec)
    if spec.startswith("random-init:"):
        target = spec.split(":", 1)[1]
        return ModelSource("random-init", "random-init", _random_init(target, seed), spec)
    if spec.startswith("timm:") or (not Path(spec).exists() and _is_timm_name(spec)):
        name = spec.split(":", 1)[1] if spec.startswith("timm:") else spec
        weights = None
        if "@" in name:
            name, weights = name.split("@", 1)
        if screen_channels is None:
            raise ValueError(f"{spec}: a timm backbone needs the screen's channels to build its first layer")
        from cellmae.models.timm_backbone import TimmFeatureModel

        model = TimmFeatureModel(name, screen_channels, tile=tile, weights=weights)
        return ModelSource("timm", name, model, spec, weights=weights)
    if spec.startswith("openphenom:"):
        return _openphenom(Path(spec.split(":", 1)[1]), spec)
    path = Path(spec)
    if path.is_dir():
        from cellmae.models import from_pretrained

        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is a directory but has no config.json (not a cellmae checkpoint)")
        return ModelSource("cellmae", path.name, from_pretrained(path), str(path.resolve()), weights=str(path / "model.safetensors"))
    if path.is_file():
        if path.name == "model.safetensors" and (path.parent / "config.json").is_file():
            from cellmae.models import from_pretrained

            return ModelSource("cellmae", path.parent.name, from_pretrained(path.parent), str(path.resolve()), weights=str(path))
        return _openphenom(path, spec)
    raise ValueError(
        f"model source {spec!r} is neither a checkpoint path nor a known name; use a cellmae checkpoint dir, "
        "an OpenPhenom file, 'timm:NAME[@WEIGHTS]', 'random-init:PRESET|CHECKPOINT_DIR' or 'handcrafted'"
    )


def _openphenom(path: Path, spec: str) -> ModelSource:
    if not path.is_file():
        raise FileNotFoundError(f"OpenPhenom checkpoint {path} does not exist")
    from cellmae.models import load_openphenom

    return ModelSource("openphenom", "openphenom", load_openphenom(path), str(path.resolve()), weights=str(path))


def _is_timm_name(name: str) -> bool:
    if "/" in name or name.startswith("."):
        return False
    try:
        import timm

        return bool(timm.is_model(name.split("@", 1)[0]))
    except ImportError:
        return False
