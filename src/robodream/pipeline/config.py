"""Typed configs from dataclass defaults, YAML files and dotted command-line overrides (design.md §4).

    robodream collect task=pick_place episodes=50 env.randomization.light=true
    robodream train-wm world_model=configs/world_model/tiny.yaml trainer.max_steps=2000

Order of precedence: dataclass defaults < YAML files (in order) < `key=value` overrides (in order). An
override whose value is a .yaml/.yml path and whose key names a sub-config merges that file into the
sub-config. Unknown keys and wrongly typed values stop with one line naming the key and the valid ones.
A config class may accept the keys of an older version: its `translate_legacy(key, value)` returns the
current (key, value) pairs for a retired key (none to drop it), and a `deprecated:` line says what to write now.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from robodream.errors import RobodreamError

T = TypeVar("T")
YAML_SUFFIXES = (".yaml", ".yml")


def _read_yaml(path: str | os.PathLike) -> DictConfig:
    path = Path(path)
    if not path.is_file():
        raise RobodreamError(f"config file {path} does not exist")
    try:
        loaded = OmegaConf.load(path)
    except Exception as exc:  # yaml.YAMLError and friends: report the file, not a traceback
        raise RobodreamError(f"cannot parse {path}: {exc}") from None
    if not isinstance(loaded, DictConfig):
        raise RobodreamError(f"{path} must hold a mapping of config keys, not a {type(loaded).__name__}")
    return loaded


def _valid_keys(node: Any) -> str:
    return ", ".join(str(k) for k in node.keys()) if isinstance(node, DictConfig) else "(none)"


def _explain(exc: OmegaConfBaseException, where: str, base: DictConfig) -> RobodreamError:
    key = getattr(exc, "full_key", None) or getattr(exc, "key", None) or "?"
    if isinstance(exc, (ConfigKeyError, ConfigAttributeError)):
        parent_path = str(key).rsplit(".", 1)[0] if "." in str(key) else ""
        parent = OmegaConf.select(base, parent_path) if parent_path else base
        return RobodreamError(f"unknown config key '{key}' ({where}); valid keys here: {_valid_keys(parent)}")
    if isinstance(exc, ValidationError):
        return RobodreamError(f"bad value for '{key}' ({where}): {exc.msg.splitlines()[0]}")
    return RobodreamError(f"invalid config ({where}): {str(exc).splitlines()[0]}")


def _translate_legacy(base: DictConfig, update: DictConfig, where: str, path: str = "") -> DictConfig:
    """`update` with the retired keys of every sub-config of `base` that knows them replaced by current ones."""
    schema = OmegaConf.get_type(base)
    translate = getattr(schema, "translate_legacy", None)
    renamed = {}
    for key, value in update.items_ex(resolve=False):
        name = f"{path}{key}"
        current = base.get(key) if key in base else None
        if isinstance(value, DictConfig) and isinstance(current, DictConfig):
            value = _translate_legacy(current, value, where, f"{name}.")
        elif translate is not None and key not in base:
            pairs = translate(str(key), value)
            if pairs is not None:
                now = ", ".join(f"{path}{k}={v}" for k, v in pairs) or "nothing (it is the default)"
                print(f"deprecated: {name}={value} ({where}) is now {now}", file=sys.stderr)
                renamed.update(pairs)
                continue
        renamed[key] = value
    return OmegaConf.create(renamed)


def _merge(base: DictConfig, update: Any, where: str) -> DictConfig:
    try:
        if isinstance(update, DictConfig):
            update = _translate_legacy(base, update, where)
        return OmegaConf.merge(base, update)
    except OmegaConfBaseException as exc:
        raise _explain(exc, where, base) from None


def parse_overrides(args: Sequence[str]) -> list[tuple[str, str]]:
    """Split `key=value` arguments, refusing anything else with a hint."""
    pairs = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise RobodreamError(f"expected key=value, got {arg!r} (e.g. episodes=20)")
        pairs.append((key.strip(), value))
    return pairs


def build_config(schema: type[T], overrides: Sequence[str] = (), files: Sequence[str | os.PathLike] = ()) -> T:
    """Merge defaults, YAML files and overrides into an instance of the dataclass `schema`.

    The dataclass's __post_init__ runs on the merged values, so its validation sees the final config.
    """
    merged: DictConfig = OmegaConf.structured(schema)
    for file in files:
        merged = _merge(merged, _read_yaml(file), f"in {file}")
    for key, value in parse_overrides(overrides):
        node = OmegaConf.select(merged, key, default=None, throw_on_missing=False)
        if isinstance(node, DictConfig) and value.endswith(YAML_SUFFIXES):
            update = OmegaConf.create({})
            OmegaConf.update(update, key, _read_yaml(value), force_add=True)
            merged = _merge(merged, update, f"in {value}, given as {key}")
            continue
        try:
            merged = _merge(merged, OmegaConf.from_dotlist([f"{key}={value}"]), f"from {key}={value}")
        except OmegaConfBaseException as exc:  # from_dotlist's own parse errors
            raise _explain(exc, f"from {key}={value}", merged) from None
    try:
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        raise _explain(exc, "while building the config", merged) from None
    except (ValueError, TypeError) as exc:
        raise RobodreamError(str(exc)) from None


def to_yaml(config: Any) -> str:
    """The resolved config as YAML (for saving next to outputs and printing)."""
    return OmegaConf.to_yaml(OmegaConf.structured(config) if is_dataclass(config) else config)


def to_dict(config: Any) -> dict[str, Any]:
    """The resolved config as a plain dict (JSON-serialisable)."""
    return OmegaConf.to_container(OmegaConf.structured(config), resolve=True)  # type: ignore[return-value]


def with_defaults(schema: type, recorded: Any) -> dict[str, Any] | None:
    """A config recorded by an older version, completed with `schema`'s defaults for fields added since.

    None when it cannot be read as a `schema` (a field it names no longer exists, a value of the wrong type):
    callers treat that as a mismatch.
    """
    if not isinstance(recorded, dict):
        return None
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), recorded)
    except OmegaConfBaseException:
        return None
    return OmegaConf.to_container(merged, resolve=True)  # type: ignore[return-value]


def save_config(config: Any, path: str | os.PathLike) -> Path:
    """Write the resolved config as YAML."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_yaml(config))
    return path
