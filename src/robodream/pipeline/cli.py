"""The `robodream` command line.

Config-driven subcommands take YAML files and `key=value` overrides as positional arguments:

    robodream collect task=push_cube episodes=200 workers=2 out=data/push.zarr
    robodream collect configs/collect/pick_place.yaml episodes=50
    robodream run configs/pipeline/quickstart.yaml

Store tools take the store path (or fsspec URL) first:

    robodream info data/push.zarr
    robodream viz data/push.zarr --episodes 0-3
    robodream repair data/push.zarr
    robodream merge data/a.zarr data/b.zarr out=data/all.zarr

A bad input prints one line starting with "error:" and exits with status 2. `robodream <command> --help` lists a
config command's top-level keys with their defaults; `--show-config [files and overrides]` prints the resolved
config (YAML) and exits.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from robodream import __version__
from robodream.errors import RobodreamError, error_line
from robodream.pipeline.cli_args import (
    ConfigShown,
    RobodreamParser,
    add_config_command,
    build_from_args,
    show_config_only,
    split_config_args,
)


def _cmd_run(ns: argparse.Namespace) -> int:
    import shlex

    from robodream.pipeline.run import PipelineConfig, run_pipeline

    outputs = run_pipeline(build_from_args(PipelineConfig, ns.args), "robodream run " + shlex.join(ns.args))
    print("\noutputs:")
    for kind, paths in outputs.items():
        for path in paths:
            print(f"  {kind:<7} {path}")
    return 0


def _add_run_command(sub) -> None:
    add_config_command(sub, "run", "run the pipeline described by a configs/pipeline/*.yaml file", _cmd_run,
                       "robodream.pipeline.run:PipelineConfig")


# Modules that add subcommands: each defines `add_commands(sub)` and imports its heavy dependencies only
# inside its handlers, so that building the parser stays fast.
COMMAND_MODULES: tuple[str, ...] = (
    "robodream.pipeline.data.commands",  # collect, info, viz, repair, merge, teleop, import-*, export-lerobot
    "robodream.pipeline.world_model.commands",  # train-wm, dream, eval-wm, train-probe
    "robodream.pipeline.policy.commands",  # train-policy, eval
    "robodream.pipeline.synthetic.commands",  # generate
    "robodream.pipeline.robot.commands",  # sim-arm, deploy, record-ros
    "robodream.pipeline.report.commands",  # report
    "robodream.pipeline.experiments.commands",  # experiment augment, experiment rank
)


def build_parser() -> argparse.ArgumentParser:
    parser = RobodreamParser(prog="robodream", description=__doc__.split("\n\n")[0],
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"robodream {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command", parser_class=RobodreamParser)
    _add_run_command(sub)
    for module in COMMAND_MODULES:
        importlib.import_module(module).add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # parse_known_args + re-attaching key=value leftovers lets config overrides come after options too
    # (`robodream dream --episodes 0-7 seed=3`), which plain argparse refuses once an option was seen.
    ns, extra = parser.parse_known_args(argv)
    not_config = split_config_args(extra).others
    leftovers = [a for a in extra if a not in not_config]
    if len(leftovers) != len(extra) or (leftovers and not hasattr(ns, "args")):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if leftovers:
        ns.args = [*ns.args, *leftovers]
    show_config_only(bool(getattr(ns, "show_config", False)))
    try:
        return ns.handler(ns)
    except ConfigShown:
        return 0
    except RobodreamError as exc:
        print(f"error: {error_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aborted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `robodream info ... | head`: the reader left, which is not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
