"""One way in for every model: ``load(spec)`` -> a model with ``forward_features`` and ``embed``.

Specs (the same as ``cellmae embed --model``), decided by content, never by a file's suffix:

- ``handcrafted``                          the classical per-image features (no weights)
- ``random-init:PRESET`` / ``random-init:DIR``  a preset, or a checkpoint's architecture, untrained (seeded)
- ``timm:NAME`` / ``timm:NAME@FILE``       a timm backbone built for ``channels``; weights only from FILE
- ``hf:ORG/NAME[@REVISION]``               a Hugging Face model repo, through the hub's local cache
- ``openphenom:PATH``                      an OpenPhenom file or its folder (explicitly)
- a folder                                 ``config.json`` decides: a cellmae checkpoint, or the published
                                           OpenPhenom folder (``config.json`` + ``model.safetensors``)
- a file                                   its bytes decide (torch zip or safetensors); a cellmae
                                           ``model.safetensors`` beside its ``config.json`` loads that checkpoint
- a bare name timm knows                   as ``timm:NAME``

The returned model carries ``model.source_info`` (:class:`SourceInfo`): kind, name, spec, the weights
file, and what loading found (e.g. OpenPhenom's decoder shapes).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cellmae.layout import MODEL_CONFIG_FILE, MODEL_FILES, MODEL_WEIGHTS_FILE

HANDCRAFTED = "handcrafted"
HUB_PREFIX = "hf:"
_WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")
SPEC_HELP = ("use a cellmae checkpoint folder, an OpenPhenom file or folder, 'hf:ORG/NAME[@REVISION]', "
             "'timm:NAME[@WEIGHTS]', 'random-init:PRESET|CHECKPOINT_DIR' or 'handcrafted'")


@dataclass
class SourceInfo:
    """Where a loaded model came from (stored with embeddings, so a resume notices other weights)."""

    kind: str  # "cellmae" | "openphenom" | "random-init" | "timm" | "handcrafted" | "module"
    name: str
    spec: str
    weights: str | None = None
    found: dict[str, Any] = field(default_factory=dict)


def load(
    spec: Any,
    *,
    channels: Sequence[str] | None = None,
    tile: int | None = None,
    seed: int = 0,
    map_location: str = "cpu",
    strict_decoder: bool = False,
) -> Any:
    """Load the model ``spec`` names (see the module docstring); a model object is returned as is.

    ``channels`` (the screen's channel names) and ``tile`` (input size) are needed only by timm
    backbones, whose first layer and position table are built for them. ``seed`` seeds random-init.
    OpenPhenom decoders that do not fit are reported, not fatal, unless ``strict_decoder``.
    """
    if not isinstance(spec, str | os.PathLike):
        if not hasattr(spec, "forward_features"):
            raise TypeError(f"model object {type(spec).__name__} has no forward_features(...)")
        if getattr(spec, "source_info", None) is None:
            _tag(spec, SourceInfo("module", type(spec).__name__, type(spec).__name__))
        return spec
    text = str(spec)
    if text == HANDCRAFTED:
        from cellmae.models.handcrafted import HandcraftedFeatures

        return _tag(HandcraftedFeatures(), SourceInfo("handcrafted", HANDCRAFTED, text))
    if text.startswith("random-init:"):
        return _tag(_random_init(text.split(":", 1)[1], seed, text), SourceInfo("random-init", "random-init", text))
    if text.startswith("timm:") or (not Path(text).exists() and _is_timm_name(text)):
        return _timm(text, channels, tile)
    if text.startswith(HUB_PREFIX):
        folder = hub_snapshot(text)
        model = _load_path(folder, text, map_location, strict_decoder)
        model.source_info.spec = text
        return model
    if text.startswith("openphenom:"):
        path = Path(text.split(":", 1)[1])
        if not path.exists():
            raise FileNotFoundError(f"OpenPhenom checkpoint {path} does not exist")
        return _openphenom(path if path.is_file() else _weights_in(path), text, map_location, strict_decoder)
    path = Path(text)
    if path.exists():
        return _load_path(path, str(path.resolve()), map_location, strict_decoder)
    raise ValueError(f"model source {text!r} is neither a checkpoint path nor a known name; {SPEC_HELP}")


def _tag(model: Any, info: SourceInfo) -> Any:
    model.source_info = info
    return model


def _is_cellmae_config(path: Path) -> bool:
    from cellmae.models.checkpoint import FORMAT

    try:
        return json.loads(path.read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _load_path(path: Path, spec: str, map_location: str, strict_decoder: bool) -> Any:
    """A folder or a file: config.json and the weights' own bytes decide what it is."""
    folder = path if path.is_dir() else path.parent
    cellmae_cfg = _is_cellmae_config(folder / MODEL_CONFIG_FILE)
    if path.is_dir() and not cellmae_cfg:
        return _openphenom(_weights_in(path), spec, map_location, strict_decoder)
    if cellmae_cfg and (path.is_dir() or path.name == MODEL_WEIGHTS_FILE):
        from cellmae.models.checkpoint import from_pretrained

        model = from_pretrained(folder, map_location=map_location)
        return _tag(model, SourceInfo("cellmae", folder.name, spec, weights=str(folder / MODEL_WEIGHTS_FILE)))
    return _openphenom(path, spec, map_location, strict_decoder)


def _weights_in(folder: Path) -> Path:
    """The weights file of a downloaded model folder: model.safetensors, else its only weights file."""
    if (folder / MODEL_WEIGHTS_FILE).is_file():
        return folder / MODEL_WEIGHTS_FILE
    files = sorted(p for p in folder.iterdir() if p.suffix in _WEIGHT_SUFFIXES and p.is_file())
    if len(files) != 1:
        raise ValueError(f"{folder}: expected model.safetensors (or one weights file), found "
                         f"{[p.name for p in files] or 'none'}; {SPEC_HELP}")
    return files[0]


def _openphenom(path: Path, spec: str, map_location: str, strict_decoder: bool) -> Any:
    from cellmae.models.openphenom import load_openphenom

    model = load_openphenom(path, map_location=map_location, strict_decoder=strict_decoder).eval()
    return _tag(model, SourceInfo("openphenom", "openphenom", spec, weights=str(path), found=model.load_report))


def hub_snapshot(spec: str) -> Path:
    """The local folder of ``hf:ORG/NAME[@REVISION]``: huggingface_hub's cache, downloading only when
    online and missing (``HF_HUB_OFFLINE=1`` uses the cache alone)."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    repo, _, revision = spec[len(HUB_PREFIX):].partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ValueError(f"{spec!r}: expected hf:ORG/NAME or hf:ORG/NAME@REVISION")
    try:  # only the model files: the OpenPhenom repo also holds code and notebooks
        return Path(snapshot_download(repo_id=repo, revision=revision or None, allow_patterns=MODEL_FILES))
    except LocalEntryNotFoundError:
        raise ValueError(
            f"{spec}: not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) and the hub is not reachable "
            f"(offline: {constants.HF_HUB_OFFLINE}); download it once with network access "
            f"(`hf download {repo}`) or pass the downloaded folder"
        ) from None
    except HfHubHTTPError as err:
        raise ValueError(f"{spec}: the hub refused it ({str(err).splitlines()[0]}); check the name, "
                         "revision and your token (`hf auth login`) for gated or private repos") from None


def _random_init(target: str, seed: int, spec: str) -> Any:
    import torch

    from cellmae.models.checkpoint import read_config
    from cellmae.models.registry import create_model, list_models, model_from_config

    torch.manual_seed(seed)  # the baseline must be the same model on every rank and every rerun
    if Path(target).is_dir():  # same architecture as a trained checkpoint, untrained weights
        return model_from_config(read_config(target)["config"])
    if target not in list_models():
        raise ValueError(f"{spec}: unknown preset; known presets: {', '.join(list_models())}")
    return create_model(target)


def _timm(spec: str, channels: Sequence[str] | None, tile: int | None) -> Any:
    name = spec.split(":", 1)[1] if spec.startswith("timm:") else spec
    weights = None
    if "@" in name:
        name, weights = name.split("@", 1)
    if channels is None:
        raise ValueError(f"{spec}: a timm backbone needs the screen's channels (channels=[...]) to build its first layer")
    from cellmae.models.timm_backbone import TimmFeatureModel

    model = TimmFeatureModel(name, channels, tile=tile or 64, weights=weights)
    return _tag(model, SourceInfo("timm", name, spec, weights=weights))


def _is_timm_name(name: str) -> bool:
    if "/" in name or name.startswith(".") or ":" in name:
        return False
    import timm

    return bool(timm.is_model(name.split("@", 1)[0]))
