"""What every command needs from the command line, and nothing of the commands themselves (so that command
modules import it without importing cli.py, which imports them all): one way to split positional arguments
into YAML files, key=value overrides and other words (store paths, bags), the config built from them
(with --show-config), and the parser pieces that make `--help` list a config's keys.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
from typing import NamedTuple

from robodream.errors import RobodreamError


class ConfigArgs(NamedTuple):
    """Positional arguments sorted, each list in the order given."""

    files: list[str]  # YAML config files (merged in order)
    overrides: list[str]  # key=value (dotted) overrides
    others: list[str]  # anything else: store paths, bags, ... (commands that take none refuse them)


def split_config_args(args: Sequence[str]) -> ConfigArgs:
    """The one rule for every command: a word with "=" is an override, else a .yaml/.yml word is a config file,
    else it is something the command names itself (a store, a bag)."""
    from robodream.pipeline.config import YAML_SUFFIXES  # (omegaconf: not loaded while the parser is built)

    overrides = [a for a in args if "=" in a]
    files = [a for a in args if "=" not in a and a.endswith(YAML_SUFFIXES)]
    others = [a for a in args if "=" not in a and not a.endswith(YAML_SUFFIXES)]
    return ConfigArgs(files, overrides, others)


def config_from_args(schema, args: Sequence[str], what: str | None = None):
    """A config from YAML files and key=value overrides only, refusing any other word (`what` names the command
    in that error: "export-lerobot: expected key=value options after the paths, got 'x'")."""
    from robodream.pipeline.config import build_config

    split = split_config_args(args)
    if split.others:
        if what:
            raise RobodreamError(f"{what}: expected key=value options after the paths, got {split.others[0]!r}")
        raise RobodreamError(f"expected key=value, got {split.others[0]!r} (e.g. episodes=20)")
    return build_config(schema, split.overrides, split.files)


class ConfigShown(Exception):
    """--show-config: the handler's config was printed; the command stops before doing anything."""


_show_config_only = False  # set by cli.main() for --show-config


def show_config_only(flag: bool) -> None:
    """Make `build_from_args` print the resolved config and stop (cli.main sets it from --show-config)."""
    global _show_config_only
    _show_config_only = flag


def build_from_args(schema, args: Sequence[str]):
    """A config from positional args: YAML files (merged in order) and key=value overrides.

    With --show-config it prints the resolved config instead and stops the command (every config command
    builds its config here first, after its own argument handling, so what is shown is what would run)."""
    from robodream.pipeline.config import to_yaml

    config = config_from_args(schema, args)
    if _show_config_only:
        print(to_yaml(config), end="")
        raise ConfigShown
    return config


def load_schema(schema: str) -> type:
    """The config dataclass named "module:Class" (imported only when asked for: building the parser stays fast)."""
    module, _, name = schema.partition(":")
    return getattr(importlib.import_module(module), name)


class RobodreamParser(argparse.ArgumentParser):
    """An argument parser whose --help ends with the config keys of its command, when it has a config schema."""

    config_schema: str | None = None

    def format_help(self) -> str:
        text = super().format_help()
        if self.config_schema is None:
            return text
        from robodream.pipeline.config import describe_keys

        keys = describe_keys(load_schema(self.config_schema))
        listing = "\n".join(line.rstrip() for line in keys)
        return f"{text}\nconfig keys (defaults; set as key=value or section.key=value):\n{listing}\n"


def add_config_command(sub, name: str, help_text: str, handler, schema: str | None = None) -> argparse.ArgumentParser:
    """A subcommand whose positional arguments are YAML files and key=value overrides; `schema` ("module:Class",
    the config dataclass) makes --help list its keys and enables --show-config."""
    cmd = sub.add_parser(name, help=help_text, description=help_text)
    cmd.add_argument("args", nargs="*", metavar="config.yaml|key=value",
                     help="YAML config files and dotted overrides, e.g. episodes=20 env.image_size=96")
    cmd.add_argument("--show-config", action="store_true",
                     help="print the resolved config (defaults < files < overrides) as YAML and exit")
    cmd.config_schema = schema
    cmd.set_defaults(handler=handler)
    return cmd
