"""Typed configs from dataclass defaults, YAML files and dotted command-line overrides (design.md §4).

    robodream collect task=pick_place episodes=50 env.randomization.light=true
    robodream train-wm world_model=configs/world_model/tiny.yaml trainer.max_steps=2000

Order of precedence: dataclass defaults < YAML files (in order) < `key=value` overrides (in order). An
override whose value is a .yaml/.yml path and whose key names a sub-config merges that file into the
sub-config, and so does a *name* (`policy=diffusion`, `world_model=tiny`, `env=pick_place`): the shipped
configs/<folder>/<name>.yaml, folder per section in SECTION_FOLDERS (configs/ ships inside the package as
robodream/configs, see setup.py, so names resolve outside the clone too). Unknown keys, wrongly typed values
and a value where a section is expected stop with one line naming the key and what to write instead.
A config class may accept the keys of an older version: its `translate_legacy(key, value)` returns the
current (key, value) pairs for a retired key (none to drop it), and a `deprecated:` line says what to write now.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from robodream.errors import RobodreamError

T = TypeVar("T")
YAML_SUFFIXES = (".yaml", ".yml")
# The configs/ folder holding the named configs of each kind of section (by its config class, so that `env=` of
# collect, eval and sim-arm all take configs/task names, while a pipeline's `world_model:` stage section does not).
SECTION_FOLDERS = {"EnvConfig": "task", "WorldModelConfig": "world_model", "PolicyConfig": "policy",
                   "RobotConfig": "robot", "PlannerConfig": "planner"}


def configs_dir() -> Path | None:
    """The shipped configs/: inside an installed package (robodream/configs), or the source checkout's."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "configs", package.parents[1] / "configs"):
        if candidate.is_dir():
            return candidate
    return None


def _folder(node: Any) -> str | None:
    return SECTION_FOLDERS.get(getattr(OmegaConf.get_type(node), "__name__", "")) if isinstance(node, DictConfig) \
        else None


def named_configs(node: Any) -> dict[str, Path]:
    """{name: path} of the shipped configs a section node (e.g. a PolicyConfig) can be set to by name."""
    root, folder = configs_dir(), _folder(node)
    if root is None or folder is None:
        return {}
    return {path.stem: path for path in sorted((root / folder).glob("*.yaml"))}


def _example_key(node: DictConfig) -> str:
    if "max_steps" in node and node.max_steps is not None:
        return f"max_steps={node.max_steps}"
    for key, value in node.items_ex(resolve=False):
        if value is not None and not isinstance(value, (DictConfig, ListConfig)):
            return f"{key}={str(value).lower() if isinstance(value, bool) else value}"
    return f"{next(iter(node.keys()), 'key')}=..."


def _section_file(key: str, value: str, node: DictConfig) -> str:
    """The YAML file a section given as a value stands for: a path, or the name of a shipped config."""
    if value.endswith(YAML_SUFFIXES):
        return value
    section = key.rsplit(".", 1)[-1]
    names = named_configs(node)
    if value in names:
        return str(names[value])
    choose = f"one of {', '.join(names)} (configs/{_folder(node)}), " if names else ""
    inner = [f"{key}.{child}={value}" for child in node if _folder(node[child]) and value in named_configs(node[child])]
    if inner:  # a pipeline's `world_model=tiny` means its world_model.world_model
        choose = f"{inner[0]} (a name for the {inner[0].split('=')[0]} section), "
    raise RobodreamError(
        f"{key}={value}: '{key}' is a section, not a value; write {choose}a YAML file ({key}=my_{section}.yaml) "
        f"or set its keys, e.g. {key}.{_example_key(node)} (keys: {_valid_keys(node)})"
    )


def _expand_sections(base: DictConfig, update: DictConfig, where: str, path: str = "") -> DictConfig:
    """`update` with every section given as a name or a YAML path (`policy=diffusion`) replaced by that file."""
    expanded = {}
    for key, value in update.items_ex(resolve=False):
        current = base.get(key) if key in base else None
        if isinstance(current, DictConfig) and is_dataclass(OmegaConf.get_type(current)):
            if value is not None and not isinstance(value, (DictConfig, ListConfig)):
                value = _read_yaml(_section_file(f"{path}{key}", str(value), current))
            if isinstance(value, DictConfig):
                value = _expand_sections(current, value, where, f"{path}{key}.")
        expanded[key] = value
    return OmegaConf.create(expanded)


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
    message = (getattr(exc, "msg", None) or str(exc) or type(exc).__name__).splitlines()[0]
    if isinstance(exc, ValidationError):
        return RobodreamError(f"bad value for '{key}' ({where}): {message}")
    return RobodreamError(f"invalid config ({where}): {message}")


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
            update = _translate_legacy(base, _expand_sections(base, update, where), where)
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


def _field_comments(schema: type) -> dict[str, str]:
    """{field: the comment after it in the dataclass source} (what `--help` shows beside each key)."""
    import inspect
    import re

    try:
        source = inspect.getsource(schema)
    except (OSError, TypeError):
        return {}
    found = re.finditer(r"^\s{4}(\w+):[^#\n]*#:?\s*(.+)$", source, flags=re.MULTILINE)
    return {match.group(1): match.group(2).strip() for match in found}


def describe_keys(schema: type) -> list[str]:
    """One line per top-level key of `schema`: its default (a section: its keys, and its shipped names)."""
    node: DictConfig = OmegaConf.structured(schema)
    plain = OmegaConf.to_container(node, resolve=False, throw_on_missing=False)
    comments = _field_comments(schema)
    lines = []
    for key, value in plain.items():
        if OmegaConf.is_missing(node, key):
            shown = "(required)"
        elif isinstance(node[key], DictConfig) and is_dataclass(OmegaConf.get_type(node[key])):
            names = named_configs(node[key])
            shown = f"section: {key}.<key>=...  ({len(value)} keys: --show-config lists them)"
            shown += f"; or a name: {', '.join(names)}" if names else ""
        elif isinstance(value, (list, dict)):  # one line, cut short: --show-config prints it whole
            shown = json.dumps(value, separators=(", ", ": "))
            shown = shown if len(shown) <= 60 else shown[:56] + " ..."
        else:
            shown = OmegaConf.to_yaml({"v": value}).strip()[len("v: "):] or "''"
        comment = comments.get(str(key), "") if not shown.startswith("section") else ""
        lines.append(f"  {key:<16} {shown:<8}" + (f"  # {comment}" if comment else ""))
    return lines


def save_config(config: Any, path: str | os.PathLike) -> Path:
    """Write the resolved config as YAML."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_yaml(config))
    return path
