"""Training configuration: YAML presets plus ``key=value`` overrides, validated with clear errors.

A config is a tree of small dataclasses (``TrainConfig``). Presets in ``cellmae/train/presets/*.yaml``
hold only the keys that differ from the defaults; a preset may name another preset in ``base:``
to inherit from it. Every value is checked against its field's type and allowed range, and an
unknown key gets a did-you-mean suggestion, so a typo never silently trains the wrong model.

Hand-written rather than Hydra/OmegaConf: those add a dependency and a second config language for
what is ~300 lines here, and their errors do not name the preset file and the override together.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from cellmae.train.config_schema import (  # noqa: F401 - re-exported: the config API lives here
    CheckpointConfig,
    ConfigError,
    DataConfig,
    LoggingConfig,
    ModelConfig,
    OptimConfig,
    ScheduleConfig,
    TrainConfig,
    TrainerConfig,
)

PRESET_DIR = Path(__file__).resolve().parent / "presets"

# --------------------------------------------------------------------------------------------- keys


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def all_keys(cls: type = TrainConfig, prefix: str = "") -> list[str]:
    """Every dotted key of the config tree, e.g. ``optim.lr``."""
    keys = []
    hints = _field_types(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            keys.extend(all_keys(tp, f"{prefix}{f.name}."))
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


def describe_keys() -> list[tuple[str, str, Any, str]]:
    """(key, type, default, help) for every config key, for ``--help`` text and docs."""
    rows = []

    def walk(cls: type, obj: Any, prefix: str) -> None:
        hints = _field_types(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            if dataclasses.is_dataclass(tp):
                walk(tp, getattr(obj, f.name), f"{prefix}{f.name}.")
            else:
                rows.append((f"{prefix}{f.name}", _type_name(tp), getattr(obj, f.name), f.metadata.get("help", "")))

    walk(TrainConfig, TrainConfig(), "")
    return rows


def _type_name(tp: Any) -> str:
    args = typing.get_args(tp)
    if args and type(None) in args:
        return " | ".join(_type_name(a) for a in args if a is not type(None)) + " | None"
    return getattr(tp, "__name__", str(tp))


def _did_you_mean(key: str, candidates: Iterable[str]) -> str:
    candidates = list(candidates)
    close = difflib.get_close_matches(key, candidates, n=3, cutoff=0.6)
    if not close:  # match on the last component too: `lr` -> `optim.lr`, `max_step` -> `trainer.max_steps`
        leaves = {c: c.rsplit(".", 1)[-1] for c in candidates}
        near = set(difflib.get_close_matches(key.rsplit(".", 1)[-1], list(leaves.values()), n=3, cutoff=0.75))
        close = [c for c, leaf in leaves.items() if leaf in near][:3]
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


# ----------------------------------------------------------------------------------------- coercion

_BOOL_STRINGS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}
_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert ``value`` (from YAML or a command-line string) to type ``tp`` or raise ConfigError."""
    args = typing.get_args(tp)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "~")):
            if type(None) in args:
                return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if tp is Any:
        return yaml.safe_load(value) if isinstance(value, str) else value
    if value is None:
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got None")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _BOOL_STRINGS:
            return _BOOL_STRINGS[value.strip().lower()]
        raise ConfigError(f"{where}: expected a boolean (true/false), got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip().replace("_", "")):
            return int(value.strip().replace("_", ""))
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        # YAML 1.1 reads `1e-4` as a string; accept every float spelling here.
        if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if tp in (list, dict):
        if isinstance(value, str):
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError as e:
                raise ConfigError(f"{where}: cannot parse {value!r} as a {tp.__name__}: {e}") from None
        if tp is list and isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, tp):
            raise ConfigError(f"{where}: expected a {tp.__name__}, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {tp}")


def _check_range(value: Any, meta: Mapping[str, Any], where: str) -> None:
    if value is None:
        return
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, meta['choices']))}"
                          + _did_you_mean(str(value), meta["choices"]))
    bounds = {"ge": (">=", lambda a, b: a >= b), "gt": (">", lambda a, b: a > b),
              "le": ("<=", lambda a, b: a <= b), "lt": ("<", lambda a, b: a < b)}
    for name, (sym, ok) in bounds.items():
        if name in meta and not ok(value, meta[name]):
            raise ConfigError(f"{where}: must be {sym} {meta[name]}, got {value!r}")


# ------------------------------------------------------------------------------------------ merging


def _merge(obj: Any, data: Mapping[str, Any], source: str, prefix: str = "", *, update_dicts: bool = False) -> None:
    """Set the fields of dataclass ``obj`` from nested mapping ``data``, coercing and checking each.

    Dict-valued keys (``model.kwargs``) are replaced by a YAML file's mapping but updated by overrides
    (``model.kwargs.depth=4`` keeps the preset's other kwargs)."""
    cls = type(obj)
    hints = _field_types(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            raise ConfigError(f"{source}: unknown key {dotted!r}" + _did_you_mean(dotted, all_keys()))
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{source}: {dotted!r} is a section; expected a mapping, got {value!r}")
            _merge(getattr(obj, key), value, source, f"{dotted}.", update_dicts=update_dicts)
            continue
        where = f"{source}: {dotted}"
        if tp is dict and isinstance(value, Mapping):
            merged = dict(getattr(obj, key)) if update_dicts else {}
            merged.update({str(k): _yaml_scalar(v) for k, v in value.items()})
            setattr(obj, key, merged)
            continue
        coerced = _coerce(value, tp, where)
        _check_range(coerced, fields[key].metadata, where)
        setattr(obj, key, coerced)


def _yaml_scalar(value: Any) -> Any:
    """A command-line string as YAML would read it, plus the float spellings YAML 1.1 misses."""
    if not isinstance(value, str):
        return value
    if _FLOAT_RE.match(value.strip()):
        return int(value) if re.fullmatch(r"[+-]?\d+", value.strip()) else float(value)
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def parse_overrides(overrides: Iterable[str]) -> dict[str, Any]:
    """``["optim.lr=1e-3", "trainer.max_steps=100"]`` -> nested dict of (string) values."""
    nested: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE (e.g. optim.lr=3e-4)")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override {item!r}: empty key")
        node = nested
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p!r} is set twice")
        node[parts[-1]] = value
    return nested


def list_presets() -> list[str]:
    """Names of the bundled presets (``cellmae/train/presets/*.yaml``)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def resolve_preset_path(name_or_path: str | Path) -> Path:
    """A preset name (``tiny-camae``) or a YAML path -> the YAML file; clear error when missing."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    candidate = PRESET_DIR / f"{p.stem if p.suffix in ('.yaml', '.yml') else name_or_path}.yaml"
    if candidate.is_file() and not p.is_file():
        return candidate
    raise ConfigError(f"config {str(name_or_path)!r}: no such YAML file or bundled preset"
                      + _did_you_mean(str(name_or_path), list_presets())
                      + f" (presets: {', '.join(list_presets())})")


def _load_yaml_chain(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[Path, dict]]:
    """The YAML mapping of ``path`` preceded by those of its ``base:`` chain (oldest first)."""
    if path in seen:
        raise ConfigError(f"{path}: 'base' chain loops: {' -> '.join(map(str, (*seen, path)))}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    base = data.pop("base", None)
    chain: list[tuple[Path, dict]] = []
    if base is not None:
        base_path = path.parent / base if (path.parent / str(base)).is_file() else resolve_preset_path(str(base))
        chain = _load_yaml_chain(base_path, (*seen, path))
    return [*chain, (path, data)]


def load_config(config: str | Path | Mapping[str, Any] | TrainConfig | None = None,
                overrides: Iterable[str] | Mapping[str, Any] = ()) -> TrainConfig:
    """Build a validated TrainConfig from a preset name, YAML path or dict, plus overrides.

    Overrides are ``"key=value"`` strings (``optim.lr=3e-4``) or a nested/dotted mapping.
    Raises ConfigError naming the file or override and the key on any problem.
    """
    cfg = TrainConfig()
    if isinstance(config, TrainConfig):
        _merge(cfg, config.to_dict(), "<config>")
    elif isinstance(config, Mapping):
        _merge(cfg, _undot(config), "<config dict>")
    elif config is not None:
        for path, data in _load_yaml_chain(resolve_preset_path(config)):
            _merge(cfg, data, str(path))
    if isinstance(overrides, Mapping):
        _merge(cfg, _undot(overrides), "override", update_dicts=True)
    else:
        for item in overrides:  # one at a time so the error names the offending override
            _merge(cfg, parse_overrides([item]), f"override {item!r}", update_dicts=True)
    validate(cfg)
    return cfg


def _undot(mapping: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in mapping.items():
        node = out
        parts = str(k).split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        if isinstance(v, Mapping) and isinstance(node.get(parts[-1]), dict):
            node[parts[-1]].update(_undot(v))
        else:
            node[parts[-1]] = _undot(v) if isinstance(v, Mapping) and parts[-1] != "kwargs" else v
    return out


_MAX_TIME_RE = re.compile(r"^\d+:\d{1,2}:\d{1,2}:\d{1,2}$")


def validate(cfg: TrainConfig) -> None:
    """Checks that involve more than one key (single-key checks happen while merging)."""
    t = cfg.trainer
    if t.max_steps == -1 and t.max_epochs is None and t.max_time is None:
        raise ConfigError("trainer: set at least one of trainer.max_steps, trainer.max_epochs, trainer.max_time "
                          "(otherwise training never stops)")
    if t.max_steps == 0:
        raise ConfigError("trainer.max_steps: must be -1 (no limit) or >= 1, got 0")
    if t.max_time is not None and not _MAX_TIME_RE.match(t.max_time):
        raise ConfigError(f"trainer.max_time: expected 'DD:HH:MM:SS' (e.g. 00:12:00:00), got {t.max_time!r}")
    if isinstance(t.devices, bool) or not (
        t.devices == "auto" or (isinstance(t.devices, int) and (t.devices >= 1 or t.devices == -1))
        or (isinstance(t.devices, list) and t.devices and all(isinstance(d, int) and d >= 0 for d in t.devices))
    ):
        raise ConfigError(f"trainer.devices: expected 'auto', a count >= 1 (or -1 for all), or a list of device "
                          f"indices, got {t.devices!r}")
    b = cfg.optim.betas
    if len(b) != 2 or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and 0.0 <= x < 1.0 for x in b):
        raise ConfigError(f"optim.betas: expected two numbers in [0, 1), got {b!r}")
    cfg.optim.betas = [float(x) for x in b]
    if cfg.task == "wsl" and cfg.model.name.startswith(("mae", "camae", "cnnmae")):
        raise ConfigError(f"model.name: task 'wsl' needs a classifier (a 'wsl_...' model), got {cfg.model.name!r}")
    if cfg.task == "mae" and cfg.model.name.startswith("wsl"):
        raise ConfigError(f"model.name: task 'mae' needs a masked autoencoder, got classifier {cfg.model.name!r}")
    if cfg.trainer.strategy == "fsdp" and cfg.model.compile:
        raise ConfigError("model.compile: not supported together with trainer.strategy=fsdp in cellmae yet; "
                          "set one of them off")


def config_to_yaml(cfg: TrainConfig) -> str:
    """The resolved config as YAML (written next to the run so it can be inspected and resumed)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def config_differences(a: TrainConfig, b: TrainConfig, ignore: Iterable[str] = ()) -> list[str]:
    """Dotted keys whose values differ between two configs, as ``key: a -> b`` lines."""
    ignore = set(ignore)
    flat_a, flat_b = _flatten(a.to_dict()), _flatten(b.to_dict())
    return [f"{k}: {flat_a.get(k)!r} -> {flat_b.get(k)!r}" for k in sorted(set(flat_a) | set(flat_b))
            if k not in ignore and flat_a.get(k) != flat_b.get(k)]


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, Mapping) and k != "kwargs":
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
