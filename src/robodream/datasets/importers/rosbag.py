"""`robodream import-bag`: ROS 1 .bag, ROS 2 sqlite3 (.db3 / folder) and MCAP recordings into an episode store.

Reading goes through `rosbags` (pure Python: no ROS install), which deserializes custom message types from
the definitions recorded in the bag. Steps per bag: read the mapped topics once (vectors as float64, images
decoded and fitted to the store size as they arrive, so memory stays small) -> check each topic's clock runs
forwards -> cut episodes (whole bag, or at markers) -> sample every stream at the store's frame times
(`resample.py`) -> append. The store is written to a temporary path and moved into place at the end
(`outputs.atomic_output`), so a bad bag leaves nothing behind.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from robodream.datasets.importers.common import ImportSummary
from robodream.datasets.importers.resample import StreamReport, check_increasing, coverage, frame_times, resample
from robodream.datasets.importers.ros_messages import IMAGE_TYPES, normalize_msgtype
from robodream.datasets.importers.rosbag_mapping import BagImportConfig
from robodream.datasets.importers.rosbag_reader import BagClock, messages, open_bag
from robodream.datasets.importers.rosbag_streams import Images, Markers, Vectors, cross_check_joints
from robodream.datasets.outputs import atomic_output
from robodream.datasets.writer import EpisodeWriter, create_store
from robodream.errors import RobodreamError
from robodream.features import ACTION, IMAGE_PREFIX, STATE, image_feature, vector_feature

BAG_SUFFIXES = (".bag", ".mcap", ".db3")


def find_bags(paths: list[str | Path]) -> list[Path]:
    """Bags named by ``paths``: .bag / .mcap / .db3 files, rosbag2 folders (with metadata.yaml), or folders of
    those (sorted by name; each is one bag)."""
    bags: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise RobodreamError(f"{path} does not exist: give a .bag, .mcap or .db3 file, a rosbag2 folder, or a "
                                 "folder of bags")
        if path.is_file() or (path / "metadata.yaml").exists():
            if path.is_file() and path.suffix not in BAG_SUFFIXES:
                raise RobodreamError(f"{path} is not a bag: expected a {', '.join(BAG_SUFFIXES)} file or a "
                                     "rosbag2 folder")
            bags.append(path)
            continue
        inside = sorted(p for p in path.iterdir() if (p.is_file() and p.suffix in BAG_SUFFIXES)
                        or (p.is_dir() and (p / "metadata.yaml").exists()))
        if not inside:
            raise RobodreamError(f"{path} holds no bags (.bag/.mcap/.db3 files or rosbag2 folders with metadata.yaml)")
        bags.extend(inside)
    return bags


def _collectors(path: Path, cfg: BagImportConfig, topics: dict[str, str]) -> tuple[list, Markers | None]:
    """The state, action and camera collectors (in that order) and the marker collector of one bag's topics."""
    wanted: list[tuple[str, str]] = [(cfg.state.topic, "state")]
    if cfg.action.source == "topic":
        wanted.append((cfg.action.topic, "action"))
    wanted += [(camera.topic, f"cameras.{name}") for name, camera in cfg.cameras.items()]
    if cfg.episodes.split == "marker":
        wanted.append((cfg.episodes.topic, "episodes"))
    for topic, role in wanted:
        if topic not in topics:
            raise RobodreamError(f"{path} has no topic {topic!r} (mapped as {role}.topic); its topics are "
                                 f"{sorted(topics)}")
    streams: list = [Vectors(cfg.state, "state", topics[cfg.state.topic], cfg.stream_method(cfg.state, "state"))]
    if cfg.action.source == "topic":
        streams.append(Vectors(cfg.action, "action", topics[cfg.action.topic], cfg.stream_method(cfg.action, "action")))
    for name, camera in cfg.cameras.items():
        if topics[camera.topic] not in IMAGE_TYPES:
            raise RobodreamError(f"{path}: topic {camera.topic} (cameras.{name}) is {topics[camera.topic]}, "
                                 "expected sensor_msgs/msg/Image or CompressedImage")
        streams.append(Images(name, camera.topic, camera.depth_max_m, cfg))
    return streams, (Markers(cfg.episodes.topic) if cfg.episodes.split == "marker" else None)


def _check_not_empty(path: Path, streams: list, counts: dict[str, int]) -> None:
    """A mapped topic without a single message in the whole bag is a mapping or recording problem, not a short
    episode: say so, with the bag's topics and their message counts."""
    for stream in streams:
        for channel in stream.channels():
            if not stream.times.get(channel):
                what = f" for joint {channel!r}" if channel else ""
                listed = ", ".join(f"{topic} ({count})" for topic, count in sorted(counts.items()))
                raise RobodreamError(f"{path}: topic {stream.topic} ({stream.role}) has no messages{what} in the whole "
                                     f"bag; the bag's topics (messages): {listed}")


def _read_bag(path: Path, cfg: BagImportConfig) -> tuple[list, Markers | None, list[str]]:
    """Read the mapped topics of one bag; returns the stream collectors, the marker collector, and notes for the
    summary (the joints of state and action, a type-store fallback)."""
    reader, fallback = open_bag(path)
    clock = BagClock(use_header=cfg.clock == "header")
    try:
        topics = {name: normalize_msgtype(info.msgtype or "") for name, info in reader.topics.items()}
        counts = {name: int(getattr(info, "msgcount", 0) or 0) for name, info in reader.topics.items()}
        streams, markers = _collectors(path, cfg, topics)
        collectors: dict[str, list] = {}
        for collector in streams + ([markers] if markers else []):
            collectors.setdefault(collector.topic, []).append(collector)
        connections = [c for c in reader.connections if c.topic in collectors]
        for connection, receive_ns, message in messages(reader, connections, path):
            t = clock.seconds(connection.topic, message, receive_ns)
            for collector in collectors[connection.topic]:
                collector.add(message, t)
    finally:
        reader.close()
    _check_not_empty(path, streams, counts)
    for collector in streams + ([markers] if markers else []):
        hint = "; import with clock=receive to use the bag's record times" if clock.uses_header(collector.topic) else ""
        for times in collector.times.values():
            check_increasing(np.asarray(times), f"{path}: topic {collector.topic}", hint)
    notes = [cross_check_joints(streams[0], streams[1]) if cfg.action.source == "topic"
             else f"joints     state {cfg.state.topic}: {', '.join(streams[0].joint_names() or ['unnamed'])}; "
                  "action: the next state"]
    return streams, markers, notes + ([f"fallback   {fallback}"] if fallback else [])


def _intervals(markers: Markers | None, path: Path) -> list[tuple[float, float]]:
    """Episode time intervals [start, end) of one bag."""
    if markers is None:
        return [(-np.inf, np.inf)]
    times = markers.times[""]
    if not times:
        raise RobodreamError(f"{path} has no messages on the marker topic {markers.topic}: no episode starts "
                             "(use episodes.split=bag for one episode per bag)")
    intervals, opened = [], None
    for t, flag in zip(times, markers.flags, strict=True):
        if opened is not None:
            intervals.append((opened, t))
        opened = None if flag is False else t  # Bool false ends an episode; anything else starts one
    if opened is not None:
        intervals.append((opened, np.inf))
    return intervals


def _episode(streams: list, cfg: BagImportConfig, interval: tuple[float, float], where: str, reports: dict):
    """The store arrays of one episode, or a string saying why it has too few frames."""
    low, high = interval
    selected = []
    for stream in streams:
        for channel in stream.channels():
            times = np.asarray(stream.times.get(channel, []))
            inside = np.flatnonzero((times >= low) & (times < high))
            if not len(inside):
                what = f" for joint {channel!r}" if channel else ""
                return f"{where}: topic {stream.topic} ({stream.role}) has no messages{what} in it"
            selected.append((stream, channel, inside))
    spans = [coverage(np.asarray(s.times[c])[i], s.method) for s, c, i in selected]
    start, end = max(s for s, _ in spans), min(e for _, e in spans)
    if end == np.inf:
        end = max(np.asarray(s.times[c])[i][-1] for s, c, i in selected)
    grid = frame_times(start, end, cfg.fps)
    if len(grid) < cfg.episodes.min_frames:
        if end < start:
            return (f"{where}: no time in it where every topic has data (the latest first message is at {start:.3f} s, "
                    f"the earliest last one at {end:.3f} s): the episode is too short, or the sensors stamp their "
                    "headers on different clocks (then try clock=receive)")
        return (f"{where}: {len(grid)} frames at {cfg.fps:g} fps, fewer than "
                f"episodes.min_frames={cfg.episodes.min_frames}")
    parts: dict[str, list[np.ndarray]] = {}
    for stream, channel, inside in selected:
        times = np.asarray(stream.times[channel])[inside]
        values = np.stack([stream.values[channel][i] for i in inside])
        sampled, used = resample(times, values, grid, stream.method)
        parts.setdefault(stream.role, []).append(sampled)
        reports[(stream.topic, stream.role)].add_episode(times, grid, used)
    data = {STATE: np.concatenate(parts["state"], axis=1).astype(np.float32)}
    if cfg.action.source == "topic":
        data[ACTION] = np.concatenate(parts["action"], axis=1).astype(np.float32)
    else:  # the next observed state is the target the arm was moving to; the last frame holds still
        following = np.concatenate([data[STATE][1:], data[STATE][-1:]])
        data[ACTION] = following - data[STATE] if cfg.action.delta else following
    for stream in streams:
        if isinstance(stream, Images):
            data[IMAGE_PREFIX + stream.name] = parts[stream.role][0].astype(np.uint8)
    data["timestamp"] = (grid - grid[0]).astype(np.float32)
    return data


def _features(streams: list, cfg: BagImportConfig) -> tuple[dict, dict]:
    state = streams[0]
    features = {STATE: vector_feature(state.names())}
    if cfg.action.source == "topic":
        features[ACTION] = vector_feature(streams[1].names())
    else:
        features[ACTION] = vector_feature([("d_" if cfg.action.delta else "next_") + n for n in state.names()])
    cameras = {}
    for stream in streams:
        if isinstance(stream, Images) and stream.size:
            features[IMAGE_PREFIX + stream.name] = image_feature(*stream.size)
            cameras[stream.name] = {"height": stream.size[0], "width": stream.size[1], "topic": stream.topic}
    return features, cameras


def _check_same_joints(joints: dict[Path, tuple], bag: Path, streams: list) -> None:
    """Every bag of one import must name the same joints, or their values would be stored under one bag's names."""
    joints[bag] = tuple(tuple(s.joint_names() or ()) for s in streams if isinstance(s, Vectors))
    first, names = next(iter(joints.items()))
    if joints[bag] != names:
        raise RobodreamError(f"{bag} names the joints of state/action {[list(j) for j in joints[bag]]} but {first} "
                             f"{[list(j) for j in names]}: import them separately, or pick joints by name with "
                             "state.joints / action.joints")


def import_bags(paths: list[str | Path], cfg: BagImportConfig, progress: bool = True) -> ImportSummary:
    """Import every bag under ``paths`` into one new store at ``cfg.out`` (see the module docstring)."""
    bags = find_bags(paths)
    out = cfg.out or f"data/{bags[0].stem}.zarr"
    summary = ImportSummary(store=str(out), fps=cfg.fps)
    reports: dict[tuple[str, str], StreamReport] = {}
    skipped: list[str] = []
    joints: dict[Path, tuple] = {}  # per bag: the joints of the state and action streams
    with atomic_output(out, overwrite=cfg.overwrite) as temporary:
        writer: EpisodeWriter | None = None
        for bag in tqdm(bags, desc="import-bag", unit="bag", disable=not progress or len(bags) < 2, file=sys.stderr):
            streams, markers, notes = _read_bag(bag, cfg)
            _check_same_joints(joints, bag, streams)
            summary.notes += notes if len(joints) == 1 else notes[1:]  # the joints line once: they agree
            for stream in streams + ([markers] if markers else []):
                report = reports.setdefault((stream.topic, stream.role), StreamReport(stream.topic, stream.role))
                for times in stream.times.values():
                    report.add_stream(np.asarray(times), cfg.fps)
            intervals = _intervals(markers, bag)
            for k, interval in enumerate(intervals):
                where = f"{bag}" + (f" episode {k} (marker at {interval[0]:.3f} s)" if markers else "")
                data = _episode(streams, cfg, interval, where, reports)
                if isinstance(data, str):
                    if not cfg.episodes.skip_short:
                        raise RobodreamError(f"{data}; set episodes.skip_short=true to skip such episodes")
                    skipped.append(data)
                    continue
                if writer is None:
                    features, cameras = _features(streams, cfg)
                    writer = create_store(temporary, fps=cfg.fps, features=features, robot_type=cfg.robot_type,
                                          task=cfg.task, cameras=cameras,
                                          extra_attrs={"import": {"format": "rosbag", "sources": [str(b) for b in bags],
                                                                  "mapping": asdict(cfg)}})
                origin = f"{bag}#{k}" if markers else str(bag)
                writer.append_episode(data, source="import", origin=origin)
        if writer is None:
            raise RobodreamError(f"no episodes imported from {', '.join(map(str, paths))}: "
                                 + ("; ".join(skipped) if skipped else "the bags hold no data"))
        writer.close()
        summary.episodes, summary.frames, summary.features = writer.num_episodes, writer.num_frames, writer.features
    summary.notes.append("topics (per topic: messages, median rate, gaps; store frames filled, frames that repeat "
                         "the previous message, messages no frame used)")
    summary.notes += [report.line() for report in reports.values()]
    summary.notes += [f"skipped: {reason}" for reason in skipped]
    return summary
