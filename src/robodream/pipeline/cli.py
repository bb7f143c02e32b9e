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


def _cmd_collect(ns: argparse.Namespace) -> int:
    from robodream.pipeline.collect import CollectConfig, run_collect

    return run_collect(build_from_args(CollectConfig, ns.args))


def _cmd_info(ns: argparse.Namespace) -> int:
    from robodream.datasets.reader import EpisodeStore
    from robodream.pipeline.info import describe_store

    print("\n".join(describe_store(EpisodeStore.open(ns.store, cache="disk"))))
    return 0


def _cmd_viz(ns: argparse.Namespace) -> int:
    from robodream.pipeline.viz import visualize

    outputs = visualize(ns.store, episodes=ns.episodes, out_dir=ns.out, camera=ns.camera, scale=ns.scale,
                        columns=ns.columns)
    print(f"episodes {outputs.episodes}\nmp4      {outputs.mp4}\ngif      {outputs.gif}")
    return 0


def _cmd_repair(ns: argparse.Namespace) -> int:
    from robodream.datasets.writer import repair_store

    report = repair_store(ns.store)
    if report.changed:
        print(f"repaired {ns.store}: dropped {report.dropped_frames} uncommitted frames and "
              f"{report.dropped_meta_entries} metadata entries; {report.episodes} episodes "
              f"({report.frames} frames) intact")
    else:
        print(f"{ns.store} is consistent: {report.episodes} episodes, {report.frames} frames")
    return 0


def _cmd_run(ns: argparse.Namespace) -> int:
    import shlex

    from robodream.pipeline.run import PipelineConfig, run_pipeline

    outputs = run_pipeline(build_from_args(PipelineConfig, ns.args), "robodream run " + shlex.join(ns.args))
    print("\noutputs:")
    for kind, paths in outputs.items():
        for path in paths:
            print(f"  {kind:<7} {path}")
    return 0


def _add_core_commands(sub) -> None:
    add_config_command(sub, "collect", "record scripted-expert episodes in PyBullet into an episode store",
                       _cmd_collect, "robodream.pipeline.collect:CollectConfig")
    add_config_command(sub, "run", "run the pipeline described by a configs/pipeline/*.yaml file", _cmd_run,
                       "robodream.pipeline.run:PipelineConfig")

    info = sub.add_parser("info", help="summarise an episode store")
    info.add_argument("store", help="store path or fsspec URL")
    info.set_defaults(handler=_cmd_info)

    viz = sub.add_parser("viz", help="write an MP4 and a GIF grid of episodes")
    viz.add_argument("store", help="store path or fsspec URL")
    viz.add_argument("--episodes", default="0-3", help="e.g. 0-3, 0,2,5-7 or all (default 0-3)")
    viz.add_argument("--out", default=None, help="output folder (default: next to the store)")
    viz.add_argument("--camera", default=None, help="camera name (default: the first)")
    viz.add_argument("--scale", type=int, default=4, help="pixel upscaling factor (default 4)")
    viz.add_argument("--columns", type=int, default=None, help="grid columns (default: square-ish)")
    viz.set_defaults(handler=_cmd_viz)

    repair = sub.add_parser("repair", help="drop uncommitted trailing frames a crash left in a store")
    repair.add_argument("store", help="store path or fsspec URL")
    repair.set_defaults(handler=_cmd_repair)


# Modules that add subcommands: each defines `add_commands(sub)` and imports its heavy dependencies only
# inside its handlers, so that building the parser stays fast.
COMMAND_MODULES: tuple[str, ...] = (
    "robodream.pipeline.world_model",  # train-wm, dream, eval-wm
    "robodream.pipeline.probe",  # train-probe
    "robodream.pipeline.generate",  # generate
    "robodream.pipeline.policy_cli",  # train-policy, eval
    "robodream.pipeline.data_cli",  # teleop, import-bag, import-lerobot, export-lerobot, import-zarr
    "robodream.pipeline.merge",  # merge
    "robodream.pipeline.ros_cli",  # sim-arm, deploy, record-ros
    "robodream.pipeline.report",  # report
    "robodream.pipeline.experiment_cli",  # experiment augment, experiment rank
)


def build_parser() -> argparse.ArgumentParser:
    parser = RobodreamParser(prog="robodream", description=__doc__.split("\n\n")[0],
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"robodream {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command", parser_class=RobodreamParser)
    _add_core_commands(sub)
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
