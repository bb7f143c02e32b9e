"""ROS 2 message <-> numpy conversions used by the arm, the sim-arm node and the recorder (rclpy messages).

Kept free of rclpy imports at module level: the message classes are imported where messages are built.
"""

from __future__ import annotations

import numpy as np

from robodream.errors import RobodreamError


def stamp_to_s(stamp) -> float:
    """builtin_interfaces/Time -> seconds (0.0 for an unset stamp)."""
    return stamp.sec + stamp.nanosec * 1e-9


def s_to_stamp(t: float):
    """Seconds -> builtin_interfaces/Time."""
    from builtin_interfaces.msg import Time

    sec = int(t)
    return Time(sec=sec, nanosec=int(round((t - sec) * 1e9)) % 1_000_000_000)


def duration(t: float):
    """Seconds -> builtin_interfaces/Duration."""
    from builtin_interfaces.msg import Duration

    sec = int(t)
    return Duration(sec=sec, nanosec=int(round((t - sec) * 1e9)))


class JointIndex:
    """Picks named joints out of JointState messages; the name -> index map is cached per name list."""

    def __init__(self, names: list[str]):
        self.names = list(names)
        self._key: tuple[str, ...] | None = None
        self._index: list[int] = []

    def positions(self, msg) -> np.ndarray | None:
        """Positions of our joints in our order, or None when the message lacks any of them (a joint state
        broadcaster may publish several groups on one topic)."""
        names = tuple(msg.name)
        if names != self._key:
            lookup = {n: i for i, n in enumerate(names)}
            if any(n not in lookup for n in self.names):
                return None
            self._key, self._index = names, [lookup[n] for n in self.names]
        pos = msg.position
        return np.array([pos[i] for i in self._index], dtype=np.float64)


def _fit_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square and resize (INTER_AREA) to size x size; no-op when already that size."""
    h, w = rgb.shape[:2]
    if h == w == size:
        return rgb
    import cv2

    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return cv2.resize(rgb[top:top + side, left:left + side], (size, size), interpolation=cv2.INTER_AREA)


def image_to_rgb(msg, size: int) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) -> (size, size, 3) uint8 RGB."""
    enc = msg.encoding.lower()
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8uc1": 1, "8uc3": 3}.get(enc)
    if channels is None:
        raise RobodreamError(f"camera image encoding {msg.encoding!r} is not supported: publish rgb8/bgr8/rgba8/"
                             "bgra8/mono8, or use a CompressedImage topic (camera compressed: true)")
    data = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, (bytes, bytearray, memoryview)) else msg.data,
                         dtype=np.uint8)
    rows = data[: msg.height * msg.step].reshape(msg.height, msg.step)
    img = rows[:, : msg.width * channels].reshape(msg.height, msg.width, channels)
    if channels == 1:
        img = np.repeat(img, 3, axis=2)
    elif enc.startswith("bgr"):
        img = img[:, :, 2::-1]
    else:
        img = img[:, :, :3]
    return np.ascontiguousarray(_fit_square(img, size))


def compressed_to_rgb(msg, size: int) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg/png) -> (size, size, 3) uint8 RGB."""
    import cv2

    bgr = cv2.imdecode(np.frombuffer(bytes(msg.data), dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise RobodreamError(f"cannot decode a CompressedImage in format {msg.format!r}: expected jpeg or png")
    return np.ascontiguousarray(_fit_square(bgr[:, :, ::-1], size))


def rgb_to_image(rgb: np.ndarray, stamp_s: float, frame_id: str):
    """(H, W, 3) uint8 -> sensor_msgs/Image rgb8."""
    from sensor_msgs.msg import Image

    msg = Image()
    msg.header.stamp = s_to_stamp(stamp_s)
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding, msg.is_bigendian, msg.step = "rgb8", 0, int(rgb.shape[1]) * 3
    msg.data = np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()
    return msg


def joint_trajectory(joints: list[str], positions: np.ndarray, time_from_start_s: float):
    """A one-point trajectory_msgs/JointTrajectory; stamp zero = "start now" for joint_trajectory_controller."""
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    msg = JointTrajectory()
    msg.joint_names = list(joints)
    point = JointTrajectoryPoint()
    point.positions = [float(v) for v in positions]
    point.time_from_start = duration(time_from_start_s)
    msg.points = [point]
    return msg


def float_array(values) -> object:
    """std_msgs/Float64MultiArray with ``values``."""
    from std_msgs.msg import Float64MultiArray

    msg = Float64MultiArray()
    msg.data = [float(v) for v in values]
    return msg


def trajectory_target(msg, joints: list[str]) -> np.ndarray | None:
    """The final point of a JointTrajectory as positions of ``joints`` (None if it lacks one of them)."""
    if not msg.points:
        return None
    lookup = {n: i for i, n in enumerate(msg.joint_names)}
    if any(j not in lookup for j in joints):
        return None
    last = msg.points[-1].positions
    return np.array([last[lookup[j]] for j in joints], dtype=np.float64)
