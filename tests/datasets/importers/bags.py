"""Real bag files for the import tests, written with the rosbags writers (ROS 2 sqlite3 / MCAP, ROS 1).

Every stream is a known function of time, so a test can say exactly what resampling must produce:
joint positions are linear in time (linear interpolation is exact), command values are 100 + t, and camera
frames are flat colours that encode the message index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

JOINTS = ["j1", "j2", "j3"]
SLOPES = np.array([1.0, -0.5, 0.25])
OFFSETS = np.array([0.1, 0.2, 0.3])
T0 = 1_700_000_000.0  # stamps in the epoch range, as recorded bags have


def joint_positions(t: np.ndarray) -> np.ndarray:
    """What the state topic reports at time t (seconds since the bag start)."""
    return OFFSETS + SLOPES * np.asarray(t)[..., None]


def colour(index: int) -> tuple[int, int, int]:
    """The flat RGB colour of camera message `index`."""
    return (index * 7) % 256, (50 + index * 3) % 256, 200


@dataclass
class BagSpec:
    duration: float = 2.0
    state_hz: float = 50.0
    state_start: float = 0.0
    camera_hz: float = 15.0
    camera_start: float = 0.03
    camera_encoding: str = "rgb8"
    compressed_hz: float = 10.0
    compressed_start: float = 0.05
    compressed_format: str = "png"
    command_hz: float = 20.0
    command_start: float = 0.02
    markers: list[tuple[float, bool]] = field(default_factory=list)
    backwards_at: int | None = None  # state header stamps jump back at this message
    empty_topics: tuple[str, ...] = ()  # connections that get no messages
    image_size: tuple[int, int] = (24, 32)  # height, width


def _stamp(ts, t: float):
    total = T0 + t
    sec = int(total)
    return ts.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=int(round((total - sec) * 1e9)))


def _messages(ts, spec: BagSpec):
    """(time, topic, msgtype, message) tuples of a bag, sorted by time."""
    import cv2

    ros1 = "seq" in ts.types["std_msgs/msg/Header"].__dataclass_fields__
    header = lambda t: ts.types["std_msgs/msg/Header"](  # noqa: E731
        stamp=_stamp(ts, t), frame_id="", **({"seq": 0} if ros1 else {}))
    out = []
    times = spec.state_start + np.arange(int(spec.duration * spec.state_hz)) / spec.state_hz
    for i, t in enumerate(times):
        stamp_t = t - 0.5 if spec.backwards_at is not None and i == spec.backwards_at else t
        msg = ts.types["sensor_msgs/msg/JointState"](header=header(stamp_t), name=list(JOINTS),
                                                     position=joint_positions(t), velocity=np.zeros(3),
                                                     effort=np.zeros(0))
        out.append((t, "/joint_states", "sensor_msgs/msg/JointState", msg))
    height, width = spec.image_size
    for i, t in enumerate(spec.camera_start + np.arange(int(spec.duration * spec.camera_hz)) / spec.camera_hz):
        rgb = np.full((height, width, 3), colour(i), np.uint8)
        pixels = {"rgb8": rgb, "bgr8": rgb[:, :, ::-1], "mono8": rgb[:, :, :1], "bayer_rggb8": rgb[:, :, :1]}[
            spec.camera_encoding]
        msg = ts.types["sensor_msgs/msg/Image"](header=header(t), height=height, width=width,
                                                encoding=spec.camera_encoding, is_bigendian=0,
                                                step=width * pixels.shape[2],
                                                data=np.ascontiguousarray(pixels).reshape(-1))
        out.append((t, "/camera/image_raw", "sensor_msgs/msg/Image", msg))
    wrist_times = spec.compressed_start + np.arange(int(spec.duration * spec.compressed_hz)) / spec.compressed_hz
    for i, t in enumerate(wrist_times):
        bgr = np.full((height, width, 3), colour(i)[::-1], np.uint8)
        ok, data = cv2.imencode("." + spec.compressed_format.replace("jpeg", "jpg"), bgr)
        msg = ts.types["sensor_msgs/msg/CompressedImage"](header=header(t), format=spec.compressed_format,
                                                          data=data.reshape(-1))
        out.append((t, "/wrist/image/compressed", "sensor_msgs/msg/CompressedImage", msg))
    layout = ts.types["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0)
    for t in spec.command_start + np.arange(int(spec.duration * spec.command_hz)) / spec.command_hz:
        msg = ts.types["std_msgs/msg/Float64MultiArray"](layout=layout, data=np.array([100.0 + t, -t]))
        out.append((t, "/command", "std_msgs/msg/Float64MultiArray", msg))
    for t, flag in spec.markers:
        out.append((t, "/episode", "std_msgs/msg/Bool", ts.types["std_msgs/msg/Bool"](data=flag)))
    return sorted(out, key=lambda m: m[0])


TOPICS = {"/joint_states": "sensor_msgs/msg/JointState", "/camera/image_raw": "sensor_msgs/msg/Image",
          "/wrist/image/compressed": "sensor_msgs/msg/CompressedImage",
          "/command": "std_msgs/msg/Float64MultiArray", "/episode": "std_msgs/msg/Bool"}


def write_bag(path: Path, spec: BagSpec | None = None, storage: str = "mcap") -> Path:
    """Write a bag: storage "mcap" or "sqlite3" (a rosbag2 folder at `path`) or "ros1" (a .bag file at `path`).
    Returns the path to give the importer."""
    from rosbags.typesys import Stores, get_typestore

    spec = spec or BagSpec()
    if storage == "ros1":
        from rosbags.rosbag1 import Writer as Writer1

        ts = get_typestore(Stores.ROS1_NOETIC)
        with Writer1(path) as writer:
            connections = {topic: writer.add_connection(topic, msgtype, typestore=ts)
                           for topic, msgtype in TOPICS.items()}
            for t, topic, msgtype, msg in _messages(ts, spec):
                if topic not in spec.empty_topics:
                    writer.write(connections[topic], int(round((T0 + t) * 1e9)), ts.serialize_ros1(msg, msgtype))
        return path
    from rosbags.rosbag2 import StoragePlugin, Writer

    ts = get_typestore(Stores.ROS2_HUMBLE)
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        connections = {topic: writer.add_connection(topic, msgtype, typestore=ts) for topic, msgtype in TOPICS.items()}
        for t, topic, msgtype, msg in _messages(ts, spec):
            if topic not in spec.empty_topics:
                writer.write(connections[topic], int(round((T0 + t) * 1e9)), ts.serialize_cdr(msg, msgtype))
    return path
