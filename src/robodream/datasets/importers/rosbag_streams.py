"""What `import-bag` collects from the mapped topics of one bag: vectors (joint states, commands), images, markers.

Each collector keeps per-channel message times (seconds on the bag's clock, see rosbag_reader) and values; a
channel is one joint of a single-joint command topic, else the whole topic (channel "").
"""

from __future__ import annotations

import numpy as np

from robodream.datasets.importers.common import fit_image
from robodream.datasets.importers.ros_messages import decode_image, get_field, joint_names_of, numbers
from robodream.datasets.importers.rosbag_mapping import BagImportConfig, StreamMapping
from robodream.errors import RobodreamError

DEFAULT_FIELDS = {
    "sensor_msgs/msg/JointState": ["position"],
    "std_msgs/msg/Float64MultiArray": ["data"],
    "std_msgs/msg/Float32MultiArray": ["data"],
    "trajectory_msgs/msg/JointTrajectory": ["points[0].positions"],
    "trajectory_msgs/msg/JointTrajectoryPoint": ["positions"],
}


class Vectors:
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
        self.field_sizes: list[int] | None = None
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

    def _check_sizes(self, parts: list[np.ndarray], names: list[str] | str | None) -> None:
        """Every field holds one value per named joint (JointState publishers often leave velocity/effort empty:
        reading them would shift values under the wrong names), or, without names, as many as before."""
        sizes = [len(values) for values in parts]
        for field, size in zip(self.fields, sizes, strict=True):
            if isinstance(names, list) and size != len(names):
                raise RobodreamError(f"topic {self.topic}: field {field!r} has {size} values but the message names "
                                     f"{len(names)} joints {names}; read only fields with one value per joint "
                                     f"({self.role}.fields)")
            if size == 0:
                raise RobodreamError(f"topic {self.topic}: field {field!r} is empty; remove it from {self.role}.fields")
        if self.field_sizes is None:
            self.field_sizes = sizes
        elif sizes != self.field_sizes and not isinstance(names, list):
            raise RobodreamError(f"topic {self.topic}: a message has {sizes} values in fields {self.fields}, earlier "
                                 f"ones {self.field_sizes}; select fixed entries with {self.role}.fields")

    def add(self, message: object, t: float) -> None:
        names = joint_names_of(message)
        parts = [numbers(get_field(message, f, self.topic), f, self.topic) for f in self.fields]
        self._check_sizes(parts, names)
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
            parts = [values[index] for values in parts]
        elif names is not None and self.message_names is None:
            self.message_names = names
        elif names is not None and names != self.message_names:
            raise RobodreamError(f"topic {self.topic}: a message names joints {names}, earlier ones "
                                 f"{self.message_names}; pick joints by name with {self.role}.joints")
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

    def joint_names(self) -> list[str] | None:
        """The joints this stream's values belong to: chosen with `joints`, else named by the messages."""
        return list(self.mapping.joints) if self.mapping.joints else self.message_names

    def reorder(self, joints: list[str]) -> None:
        """Put the message-named joints in the order of ``joints`` (the same set), in every field's block."""
        count = len(self.message_names)
        order = np.asarray([self.message_names.index(j) for j in joints])
        index = np.concatenate([block * count + order for block in range(len(self.fields))])
        self.values = {channel: [vector[index] for vector in vectors] for channel, vectors in self.values.items()}
        self.message_names = list(joints)

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


class Images:
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


class Markers:
    def __init__(self, topic: str):
        self.topic, self.role = topic, "marker"
        self.times: dict[str, list[float]] = {"": []}
        self.flags: list[bool | None] = []

    def add(self, message: object, t: float) -> None:
        data = getattr(message, "data", None)
        self.times[""].append(t)
        self.flags.append(bool(data) if isinstance(data, (bool, np.bool_)) else None)


def cross_check_joints(state: Vectors, action: Vectors) -> str:
    """The summary line naming the state's and the action's joints, after checking that they agree.

    Joints named by the action topic's messages must be joints of the state: a command for a joint the state does
    not observe (state [q0, q1, q2], commands [q1, q2, q3]) is almost always a wrong topic or an off-by-one
    naming, so it is refused. The same joints in another order are put in the state's order (matched by name,
    as a controller would). Commands for a subset of the joints are fine (e.g. an arm without its gripper), and
    joints listed explicitly in ``action.joints`` are the user's choice and not questioned.
    """
    observed, commanded = state.joint_names(), action.joint_names()
    note = ""
    if observed and commanded and not action.mapping.joints:
        extra = [j for j in commanded if j not in observed]
        if extra:
            shared = [j for j in commanded if j in observed]
            raise RobodreamError(f"action topic {action.topic} names joints {commanded} but state topic {state.topic} "
                                 f"names {observed}: {extra} are not in the state. Check the topics, or choose the "
                                 f"joints: state.joints={shared} action.joints={shared} (or list action.joints "
                                 "explicitly to keep these commands)")
        renamed = action.single or action.mapping.names  # an explicit naming keeps the message order
        if commanded != observed and sorted(commanded) == sorted(observed) and not renamed:
            action.reorder(observed)
            commanded, note = observed, " (action reordered by joint name to the state's order)"
    def shown(joints: list[str] | None, mapping: StreamMapping) -> str:
        if joints:
            return ", ".join(joints)
        if mapping.names:
            return f"{', '.join(mapping.names)} (named in the mapping; the messages name no joints to check)"
        return "no joint names: not cross-checked"

    return (f"joints     state {state.topic}: {shown(observed, state.mapping)}; action {action.topic}: "
            f"{shown(commanded, action.mapping)}{note}")
