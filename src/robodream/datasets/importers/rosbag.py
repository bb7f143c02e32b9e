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

from robodream.datasets.importers.common import ImportSummary, fit_image
from robodream.datasets.importers.resample import StreamReport, check_increasing, coverage, frame_times, resample
from robodream.datasets.importers.ros_messages import (
    IMAGE_TYPES,
    decode_image,
    get_field,
    joint_names_of,
    normalize_msgtype,
    numbers,
)
from robodream.datasets.importers.rosbag_mapping import BagImportConfig, StreamMapping
from robodream.datasets.outputs import atomic_output
from robodream.datasets.writer import EpisodeWriter, create_store
from robodream.errors import RobodreamError
from robodream.features import ACTION, IMAGE_PREFIX, STATE, image_feature, vector_feature

BAG_SUFFIXES = (".bag", ".mcap", ".db3")
DEFAULT_FIELDS = {
    "sensor_msgs/msg/JointState": ["position"],
    "std_msgs/msg/Float64MultiArray": ["data"],
    "std_msgs/msg/Float32MultiArray": ["data"],
    "trajectory_msgs/msg/JointTrajectory": ["points[0].positions"],
    "trajectory_msgs/msg/JointTrajectoryPoint": ["positions"],
}


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


def _stamp(message: object, receive_ns: int, use_header: bool) -> float:
    stamp = getattr(getattr(message, "header", None), "stamp", None)
    if use_header and stamp is not None:
        return stamp.sec + stamp.nanosec * 1e-9
    return receive_ns * 1e-9


def _has_header_clock(message: object) -> bool:
    stamp = getattr(getattr(message, "header", None), "stamp", None)
    return stamp is not None and (stamp.sec != 0 or stamp.nanosec != 0)  # all-zero stamps: driver never set them


class _Vectors:
    """Numbers from one topic; on single-joint command topics, one channel per joint (else one channel "")."""

    def __init__(self, mapping: StreamMapping, role: str, msgtype: str, method: str):
        self.mapping, self.role, self.method = mapping, role, method
        self.topic = mapping.topic
        self.fields = mapping.fields or DEFAULT_FIELDS.get(msgtype)
        if not self.fields:
            raise RobodreamError(f"topic {self.topic} ({msgtype}): set {role}.fields to the message fields to read, "
                                 "e.g. [data] or [linear.x, linear.y, linear.z]")
        self.times: dict[str, list[float]] = {}
        self.values: dict[str, list[np.ndarray]] = {}
        self.single = False  # one joint per message (a `name` string field)
        self.message_names: list[str] | None = None
        self._index_cache: dict[tuple[str, ...], np.ndarray] = {}

    def _joint_index(self, names: list[str]) -> np.ndarray:
        key = tuple(names)
        if key not in self._index_cache:
            missing = [j for j in self.mapping.joints if j not in names]
            if missing:
                raise RobodreamError(f"topic {self.topic}: joints {missing} (from {self.role}.joints) are not in the "
                                     f"message's names {names}")
            self._index_cache[key] = np.asarray([names.index(j) for j in self.mapping.joints])
        return self._index_cache[key]

    def add(self, message: object, t: float) -> None:
        names = joint_names_of(message)
        parts = [numbers(get_field(message, f, self.topic), f, self.topic) for f in self.fields]
        channel = ""
        if isinstance(names, str):
            if not self.mapping.joints:
                raise RobodreamError(f"topic {self.topic} carries one joint per message (name {names!r}): list the "
                                     f"joints to use in {self.role}.joints, e.g. joints: [{names}]")
            if names not in self.mapping.joints:
                return
            self.single, channel = True, names
        elif self.mapping.joints:
            if names is None:
                raise RobodreamError(f"topic {self.topic} has no joint names to select {self.role}.joints from: remove "
                                     "joints and choose fields instead")
            index = self._joint_index(names)
            for field, values in zip(self.fields, parts, strict=True):
                if len(values) != len(names):
                    raise RobodreamError(f"topic {self.topic}: field {field!r} has {len(values)} values but the "
                                         f"message names {len(names)} joints")
            parts = [values[index] for values in parts]
        elif names is not None and self.message_names is None:
            self.message_names = names
        vector = np.concatenate(parts)
        previous = self.values.get(channel)
        if previous and len(previous[0]) != len(vector):
            raise RobodreamError(f"topic {self.topic}: a message has {len(vector)} values, earlier ones had "
                                 f"{len(previous[0])}; select fixed entries with {self.role}.joints or fields")
        self.times.setdefault(channel, []).append(t)
        self.values.setdefault(channel, []).append(vector)

    def channels(self) -> list[str]:
        return list(self.mapping.joints) if self.single else [""]

    def width(self) -> int:
        return sum(len(values[0]) for values in self.values.values())

    def names(self) -> list[str]:
        """Feature names: the mapping's `names`, else <joint>[.<field>], else the message's names, else fields."""
        width, many = self.width(), len(self.fields) > 1
        names = self.mapping.names
        if not names and self.mapping.joints:
            if self.single:  # each joint's channel is [field1, field2, ...]
                names = [f"{j}.{f}" if many else j for j in self.mapping.joints for f in self.fields]
            else:  # fields are concatenated, each over all joints
                names = [f"{j}.{f}" if many else j for f in self.fields for j in self.mapping.joints]
        elif not names and self.message_names and len(self.message_names) * len(self.fields) == width:
            names = [f"{n}.{f}" if many else n for f in self.fields for n in self.message_names]
        elif not names:
            names = list(self.fields) if width == len(self.fields) else (
                [f"{self.fields[0]}[{i}]" for i in range(width)] if not many else [f"v{i}" for i in range(width)])
        if len(names) != width:
            raise RobodreamError(f"{self.role}.names lists {len(names)} names but topic {self.topic} gives {width} "
                                 "values per message: list one name per value")
        return list(names)


class _Images:
    def __init__(self, name: str, topic: str, depth_max_m: float, cfg: BagImportConfig):
        self.name, self.topic, self.depth_max_m, self.cfg = name, topic, depth_max_m, cfg
        self.role, self.method = f"image {name}", "nearest"
        self.times: dict[str, list[float]] = {"": []}
        self.values: dict[str, list[np.ndarray]] = {"": []}
        self.size: tuple[int, int] | None = None

    def add(self, message: object, t: float) -> None:
        image = decode_image(message, self.topic, self.depth_max_m)
        if self.size is None:
            self.size = self.cfg.target(*image.shape[:2])
        self.times[""].append(t)
        self.values[""].append(fit_image(image, *self.size, mode=self.cfg.image_fit))

    def channels(self) -> list[str]:
        return [""]


class _Markers:
    def __init__(self, topic: str):
        self.topic, self.role = topic, "marker"
        self.times: dict[str, list[float]] = {"": []}
        self.flags: list[bool | None] = []

    def add(self, message: object, t: float) -> None:
        data = getattr(message, "data", None)
        self.times[""].append(t)
        self.flags.append(bool(data) if isinstance(data, (bool, np.bool_)) else None)


def _read_bag(path: Path, cfg: BagImportConfig) -> tuple[list, _Markers | None, float]:
    """Read the mapped topics of one bag; returns the stream collectors, the marker collector, and duration."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    wanted: list[tuple[str, str]] = [(cfg.state.topic, "state")]
    if cfg.action.source == "topic":
        wanted.append((cfg.action.topic, "action"))
    wanted += [(camera.topic, f"cameras.{name}") for name, camera in cfg.cameras.items()]
    if cfg.episodes.split == "marker":
        wanted.append((cfg.episodes.topic, "episodes"))
    try:
        reader = AnyReader([path], default_typestore=get_typestore(Stores.LATEST))
        reader.open()
    except Exception as exc:  # rosbags raises many types for damaged files; name the file, not a traceback
        raise RobodreamError(f"cannot open {path}: {exc} (is it a complete ROS bag?)") from None
    try:
        topics = {name: normalize_msgtype(info.msgtype or "") for name, info in reader.topics.items()}
        for topic, role in wanted:
            if topic not in topics:
                raise RobodreamError(f"{path} has no topic {topic!r} (mapped as {role}.topic); its topics are "
                                     f"{sorted(topics)}")
        collectors: dict[str, list] = {}
        state = _Vectors(cfg.state, "state", topics[cfg.state.topic], cfg.stream_method(cfg.state, "state"))
        streams: list = [state]
        if cfg.action.source == "topic":
            streams.append(_Vectors(cfg.action, "action", topics[cfg.action.topic],
                                    cfg.stream_method(cfg.action, "action")))
        for name, camera in cfg.cameras.items():
            if topics[camera.topic] not in IMAGE_TYPES:
                raise RobodreamError(f"{path}: topic {camera.topic} (cameras.{name}) is {topics[camera.topic]}, "
                                     "expected sensor_msgs/msg/Image or CompressedImage")
            streams.append(_Images(name, camera.topic, camera.depth_max_m, cfg))
        markers = _Markers(cfg.episodes.topic) if cfg.episodes.split == "marker" else None
        for collector in streams + ([markers] if markers else []):
            collectors.setdefault(collector.topic, []).append(collector)
        use_header: dict[str, bool] = {}
        connections = [c for c in reader.connections if c.topic in collectors]
        for connection, receive_ns, message in _messages(reader, connections, path):
            topic = connection.topic
            if topic not in use_header:
                use_header[topic] = cfg.clock == "header" and _has_header_clock(message)
            t = _stamp(message, receive_ns, use_header[topic])
            for collector in collectors[topic]:
                collector.add(message, t)
        duration = reader.duration * 1e-9
    finally:
        reader.close()
    for collector in streams + ([markers] if markers else []):
        hint = "; import with clock=receive to use the bag's record times" if use_header.get(collector.topic) else ""
        for times in collector.times.values():
            check_increasing(np.asarray(times), f"{path}: topic {collector.topic}", hint)
    return streams, markers, duration


def _messages(reader, connections, path: Path):
    """reader.messages + deserialize, with errors from damaged data turned into one line naming the file."""
    iterator = reader.messages(connections=connections)
    while True:
        try:
            connection, timestamp, raw = next(iterator)
        except StopIteration:
            return
        except Exception as exc:
            raise RobodreamError(f"cannot read {path}: {exc} (the bag is truncated or corrupt)") from None
        try:
            message = reader.deserialize(raw, connection.msgtype)
        except Exception as exc:
            raise RobodreamError(f"cannot decode a {connection.msgtype} message on {connection.topic} in {path}: "
                                 f"{exc}") from None
        yield connection, timestamp, message


def _intervals(markers: _Markers | None, path: Path) -> list[tuple[float, float]]:
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
        if isinstance(stream, _Images):
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
        if isinstance(stream, _Images) and stream.size:
            features[IMAGE_PREFIX + stream.name] = image_feature(*stream.size)
            cameras[stream.name] = {"height": stream.size[0], "width": stream.size[1], "topic": stream.topic}
    return features, cameras


def import_bags(paths: list[str | Path], cfg: BagImportConfig, progress: bool = True) -> ImportSummary:
    """Import every bag under ``paths`` into one new store at ``cfg.out`` (see the module docstring)."""
    bags = find_bags(paths)
    out = cfg.out or f"data/{bags[0].stem}.zarr"
    summary = ImportSummary(store=str(out), fps=cfg.fps)
    reports: dict[tuple[str, str], StreamReport] = {}
    skipped: list[str] = []
    with atomic_output(out, overwrite=cfg.overwrite) as temporary:
        writer: EpisodeWriter | None = None
        for bag in tqdm(bags, desc="import-bag", unit="bag", disable=not progress or len(bags) < 2, file=sys.stderr):
            streams, markers, _ = _read_bag(bag, cfg)
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
