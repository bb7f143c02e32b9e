"""The data stage's commands: record, inspect, repair, merge, bring recordings in and send stores out (this module
imports nothing heavy: it is loaded whenever the parser is built; each handler imports its stage):

    robodream collect task=push_cube episodes=200 workers=2 out=data/push.zarr
    robodream info data/push.zarr
    robodream viz data/push.zarr --episodes 0-3
    robodream repair data/push.zarr
    robodream merge data/a.zarr data/b.zarr out=data/all.zarr
    robodream teleop task=pick_place out=data/teleop.zarr
    robodream import-bag <bag file | rosbag2 folder | folder of bags>... --map configs/import/<robot>.yaml \
        out=data/x.zarr
    robodream import-lerobot <dataset folder> out=data/so101.zarr [image_size=96 image_width=128 image_fit=pad]
    robodream export-lerobot <store> <dataset folder> [codec=av1 crf=30 overwrite=true]
    robodream import-zarr <replay.zarr> out=data/pusht.zarr keys.img=observation.images.front fps=10

The import/export commands take their source paths first, then `key=value` options (fields of their config).
Imports write a temporary store next to `out` and move it into place only when everything succeeded.
"""

from __future__ import annotations

import argparse

from robodream.errors import RobodreamError


def _print(lines: list[str]) -> int:
    print("\n".join(lines))
    return 0


def _cmd_collect(ns: argparse.Namespace) -> int:
    from robodream.pipeline.cli_args import build_from_args
    from robodream.pipeline.data.collect import CollectConfig, run_collect

    return run_collect(build_from_args(CollectConfig, ns.args))


def _cmd_info(ns: argparse.Namespace) -> int:
    from robodream.datasets.reader import EpisodeStore
    from robodream.pipeline.data.info import describe_store

    return _print(describe_store(EpisodeStore.open(ns.store, cache="disk")))


def _cmd_viz(ns: argparse.Namespace) -> int:
    from robodream.pipeline.data.viz import visualize

    outputs = visualize(ns.store, episodes=ns.episodes, out_dir=ns.out, camera=ns.camera, scale=ns.scale,
                        columns=ns.columns)
    return _print([f"episodes {outputs.episodes}", f"mp4      {outputs.mp4}", f"gif      {outputs.gif}"])


def _cmd_repair(ns: argparse.Namespace) -> int:
    from robodream.datasets.writer import repair_store

    report = repair_store(ns.store)
    if report.changed:
        return _print([f"repaired {ns.store}: dropped {report.dropped_frames} uncommitted frames and "
                       f"{report.dropped_meta_entries} metadata entries; {report.episodes} episodes "
                       f"({report.frames} frames) intact"])
    return _print([f"{ns.store} is consistent: {report.episodes} episodes, {report.frames} frames"])


def _cmd_merge(ns: argparse.Namespace) -> int:
    from dataclasses import replace

    from robodream.pipeline.cli_args import split_config_args
    from robodream.pipeline.config import build_config
    from robodream.pipeline.data.merge import MergeConfig, merge

    split = split_config_args(ns.args)
    cfg = build_config(MergeConfig, split.overrides, split.files)
    cfg = replace(cfg, stores=[*cfg.stores, *split.others])  # replace() re-runs the validation with every store
    return _print(merge(cfg).lines())


def _cmd_teleop(ns: argparse.Namespace) -> int:
    from robodream.pipeline.cli_args import build_from_args
    from robodream.pipeline.data.teleop import TeleopConfig, TeleopSession
    from robodream.pipeline.data.teleop_window import OpenCVWindow

    cfg = build_from_args(TeleopConfig, ns.args)  # (build_from_args also serves --show-config)
    return _print(TeleopSession(cfg, OpenCVWindow()).run().lines())


def _cmd_import_bag(ns: argparse.Namespace) -> int:
    from robodream.datasets.importers.rosbag import import_bags
    from robodream.datasets.importers.rosbag_mapping import BagImportConfig
    from robodream.pipeline.cli_args import split_config_args
    from robodream.pipeline.config import YAML_SUFFIXES, build_config

    # argparse cannot take positionals after an option, so --map swallows what follows it (see add_commands)
    mapping, split = ns.map[0], split_config_args(ns.args + ns.map[1:])
    if not mapping.endswith(YAML_SUFFIXES):
        raise RobodreamError(f"import-bag: --map takes a mapping YAML file (e.g. configs/import/widowx200.yaml), "
                             f"got {mapping!r}")
    if not split.others:
        raise RobodreamError("import-bag: give at least one bag (a .bag/.mcap/.db3 file, a rosbag2 folder, or a "
                             "folder of bags)")
    # more YAML files merge over the mapping, in order, as for every other command
    cfg = build_config(BagImportConfig, split.overrides, [mapping, *split.files])
    return _print(import_bags(split.others, cfg).lines())


def _cmd_import_lerobot(ns: argparse.Namespace) -> int:
    from robodream.datasets.importers.lerobot import LeRobotImportConfig, import_lerobot
    from robodream.pipeline.cli_args import config_from_args

    cfg = config_from_args(LeRobotImportConfig, ns.options, "import-lerobot")
    return _print(import_lerobot(ns.dataset, cfg).lines())


def _cmd_export_lerobot(ns: argparse.Namespace) -> int:
    from robodream.datasets import layout
    from robodream.datasets.importers.lerobot_export import LeRobotExportConfig, export_lerobot
    from robodream.pipeline.cli_args import config_from_args

    cfg = config_from_args(LeRobotExportConfig, ns.options, "export-lerobot")
    if not layout.is_url(ns.dataset):  # the dataset is written next to where it goes, then renamed into place
        layout.check_writable_dir(layout.local_path(ns.dataset).parent)
    return _print(export_lerobot(ns.store, ns.dataset, cfg))


def _cmd_import_zarr(ns: argparse.Namespace) -> int:
    from robodream.datasets.importers.replay_buffer import ReplayImportConfig, import_replay_buffer
    from robodream.pipeline.cli_args import config_from_args

    cfg = config_from_args(ReplayImportConfig, ns.options, "import-zarr")
    return _print(import_replay_buffer(ns.source, cfg).lines())


def add_commands(sub) -> None:
    """Register collect, info, viz, repair, merge, teleop, import-bag, import-lerobot, export-lerobot, import-zarr."""
    from robodream.pipeline.cli_args import add_config_command

    add_config_command(sub, "collect", "record scripted-expert episodes in PyBullet into an episode store",
                       _cmd_collect, "robodream.pipeline.data.collect:CollectConfig")
    _add_store_tools(sub)
    add_config_command(sub, "teleop", "drive the simulated arm from the keyboard and record episodes", _cmd_teleop,
                       "robodream.pipeline.data.teleop:TeleopConfig")
    bag = sub.add_parser("import-bag", help="import ROS 1/ROS 2/MCAP bags into an episode store (needs a --map file)",
                         description="Import ROS bags with a mapping of topics to features; options as key=value "
                                     "(e.g. out=data/x.zarr fps=10 resample=nearest image_size=96).")
    bag.add_argument("args", nargs="*", metavar="bag|key=value", help="bags (files, rosbag2 folders, folders of bags) "
                     "and key=value overrides of the mapping, before or after --map")
    bag.add_argument("--map", required=True, nargs="+", metavar=("MAP.yaml", "bag|key=value"),
                     help="mapping YAML, e.g. configs/import/widowx200.yaml")
    bag.set_defaults(handler=_cmd_import_bag)

    lerobot = sub.add_parser("import-lerobot", help="import a LeRobot v3.0 dataset folder into an episode store")
    lerobot.add_argument("dataset", help="dataset folder (with meta/info.json)")
    lerobot.add_argument("options", nargs="*", metavar="key=value",
                         help="out=..., overwrite=true, image_size=64, image_width=..., image_fit=crop|pad, fps=...")
    lerobot.set_defaults(handler=_cmd_import_lerobot)

    export = sub.add_parser("export-lerobot", help="write an episode store as a LeRobot v3.0 dataset folder")
    export.add_argument("store", help="episode store path")
    export.add_argument("dataset", help="output dataset folder")
    export.add_argument("options", nargs="*", metavar="key=value",
                        help="codec=h264|av1, crf=..., overwrite=true, task=...")
    export.set_defaults(handler=_cmd_export_lerobot)

    replay = sub.add_parser("import-zarr", help="import a Diffusion Policy zarr replay buffer into an episode store")
    replay.add_argument("source", help="replay buffer (*.zarr with data/<key> and meta/episode_ends)")
    replay.add_argument("options", nargs="*", metavar="key=value",
                        help="out=..., fps=10, keys.<array>=<feature>, image_size=64, image_scale=255 (float images "
                             "in 0..255; default: read from the data), robot_type=..., task=...")
    replay.set_defaults(handler=_cmd_import_zarr)


def _add_store_tools(sub) -> None:
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

    merge = sub.add_parser("merge", help="join episode stores (e.g. recorded on different machines) into one",
                           description="Copy the committed episodes of several stores, in order, into out=<store>. "
                                       "The stores must have the same fps and features.")
    merge.add_argument("args", nargs="*", metavar="store|config.yaml|key=value",
                       help="stores (paths or fsspec URLs), YAML configs with a `stores:` list, and options: "
                            "out=..., overwrite=true, append=true, mixed_tasks=true, progress=false")
    merge.set_defaults(handler=_cmd_merge)
