"""Turning deserialized ROS messages into numbers: field paths, joints by name, images as RGB uint8.

Messages come from `rosbags` as dataclass-like objects (ROS 1 and ROS 2 alike). A *field path* names what to
read: ``position`` (JointState), ``data`` (Float64MultiArray), ``linear.x`` (Twist), ``points[0].positions``
(JointTrajectory), ``cmd`` (a custom single-joint command). A path ending in an array contributes all its
elements; several paths are concatenated.
"""

from __future__ import annotations

import re

import numpy as np

from robodream.errors import RobodreamError

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
RAW_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1", "8UC3", "16UC1", "mono16", "32FC1")
_PART = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)$")


def normalize_msgtype(msgtype: str) -> str:
    """ROS 1 names types 'sensor_msgs/Image', ROS 2 'sensor_msgs/msg/Image'; rosbags uses the latter."""
    parts = msgtype.split("/")
    return f"{parts[0]}/msg/{parts[1]}" if len(parts) == 2 else msgtype


def get_field(message: object, path: str, topic: str) -> object:
    """The value at a dotted field path with optional [i] indices, e.g. ``points[0].positions``."""
    value = message
    for part in path.split("."):
        match = _PART.match(part)
        if not match:
            raise RobodreamError(f"topic {topic}: bad field path {path!r}; use names and [index], "
                                 "e.g. points[0].positions")
        name, indices = match.groups()
        if not hasattr(value, name):
            fields = [f for f in getattr(value, "__dataclass_fields__", {}) if not f.startswith("__")]
            raise RobodreamError(f"topic {topic}: message {getattr(message, '__msgtype__', '?')} has no field "
                                 f"{name!r} (in {path!r}); its fields are {fields}")
        value = getattr(value, name)
        for index in re.findall(r"\[(\d+)\]", indices):
            try:
                value = value[int(index)]
            except (IndexError, TypeError):
                raise RobodreamError(f"topic {topic}: field path {path!r}: index {index} is out of range") from None
    return value


def numbers(value: object, path: str, topic: str) -> np.ndarray:
    """A field value as a flat float64 vector (a scalar gives one element)."""
    try:
        array = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise RobodreamError(f"topic {topic}: field {path!r} holds {type(value).__name__}, not numbers") from None
    return array


def joint_names_of(message: object) -> list[str] | str | None:
    """The joint names a message carries: JointState.name (list), JointTrajectory.joint_names, or a
    single-joint command's ``name`` (str)."""
    for attr in ("name", "joint_names"):
        names = getattr(message, attr, None)
        if isinstance(names, str) or (isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names)):
            return names if isinstance(names, str) else list(names)
    return None


def decode_image(message: object, topic: str, depth_max_m: float = 2.0) -> np.ndarray:
    """An (H, W, 3) uint8 RGB image from a sensor_msgs Image or CompressedImage.

    Depth (16UC1 in millimetres, 32FC1 in metres, as REP 118 says) becomes grey levels over
    [0, depth_max_m], so that depth cameras fit the store's RGB image features (0 = no reading).
    """
    if hasattr(message, "format"):  # CompressedImage
        return _decode_compressed(message, topic, depth_max_m)
    encoding = str(message.encoding)
    height, width, step = int(message.height), int(message.width), int(message.step)
    data = np.asarray(message.data, dtype=np.uint8)
    if encoding not in RAW_ENCODINGS:
        raise RobodreamError(f"topic {topic}: unknown image encoding {encoding!r}; supported: "
                             f"{', '.join(RAW_ENCODINGS)} (and CompressedImage jpeg/png)")
    if height * step > data.size or height == 0 or width == 0:
        raise RobodreamError(f"topic {topic}: image data holds {data.size} bytes, expected {height} rows of {step} "
                             f"bytes for a {width}x{height} {encoding} image (truncated message?)")
    rows = data[: height * step].reshape(height, step)
    if encoding in ("16UC1", "mono16", "32FC1"):
        itemsize = 4 if encoding == "32FC1" else 2
        dtype = np.dtype("f4" if encoding == "32FC1" else "u2").newbyteorder(">" if message.is_bigendian else "<")
        values = rows[:, : width * itemsize].copy().view(dtype).astype(np.float64)
        if encoding == "mono16":  # intensity, not depth
            return np.repeat((values / 257.0).round().astype(np.uint8)[:, :, None], 3, axis=2)
        metres = values / 1000.0 if encoding == "16UC1" else np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        return _depth_to_grey(metres, depth_max_m)
    channels = {"rgb8": 3, "bgr8": 3, "8UC3": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8UC1": 1}[encoding]
    pixels = rows[:, : width * channels].reshape(height, width, channels)
    if channels == 1:
        return np.repeat(pixels, 3, axis=2)
    if encoding in ("bgr8", "8UC3", "bgra8"):  # 8UC3 is what OpenCV (cv_bridge) publishes: BGR order
        return np.ascontiguousarray(pixels[:, :, 2::-1])
    return np.ascontiguousarray(pixels[:, :, :3])


def _depth_to_grey(metres: np.ndarray, depth_max_m: float) -> np.ndarray:
    grey = (np.clip(metres / depth_max_m, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def _decode_compressed(message: object, topic: str, depth_max_m: float) -> np.ndarray:
    import cv2

    data = np.asarray(message.data, dtype=np.uint8)
    fmt = str(message.format).lower()
    if "compresseddepth" in fmt:
        # image_transport's compressedDepth prefixes the PNG with a 12-byte config header
        start = data.tobytes().find(b"\x89PNG")
        data = data[start:] if start >= 0 else data
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise RobodreamError(f"topic {topic}: cannot decode a CompressedImage with format {message.format!r} "
                             "(expected jpeg or png data; is the message truncated?)")
    if image.dtype == np.uint16:
        if "16uc1" in fmt or "compresseddepth" in fmt:
            return _depth_to_grey(image.astype(np.float64) / 1000.0, depth_max_m)
        image = (image / 257.0).round().astype(np.uint8)
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] == 4:
        image = image[:, :, :3]
    # OpenCV decodes colour as BGR; a "rgb8; jpeg compressed bgr8" image is still stored BGR inside the JPEG
    return np.ascontiguousarray(image[:, :, ::-1])
