"""The mapping file of `robodream import-bag`: which topics become which store features, and how.

    robodream import-bag recordings/ --map configs/import/widowx200.yaml out=data/wx200.zarr fps=10

The YAML file fills `BagImportConfig` (command-line `key=value` overrides win). See configs/import/*.yaml for
commented examples; the fields are documented below.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from robodream.datasets.importers.common import ImageOptions
from robodream.datasets.importers.resample import check_method
from robodream.errors import RobodreamError

ACTION_SOURCES = ("topic", "next_state")
SPLITS = ("bag", "marker")
CLOCKS = ("header", "receive")


@dataclass
class StreamMapping:
    """A vector feature read from one topic."""

    topic: str = ""
    #: message field paths to read, concatenated (default by type: JointState `position`,
    #: Float32/64MultiArray `data`, JointTrajectory `points[0].positions`)
    fields: list[str] | None = None
    #: pick entries by joint name, in this order (JointState.name, JointTrajectory.joint_names); on a topic of
    #: single-joint commands (a string `name` field) each message updates the entry of its joint. Joints that an
    #: action topic's messages name are cross-checked against the state's (rosbag_streams.cross_check_joints):
    #: foreign joints are refused, the same joints in another order are matched by name; listing action.joints
    #: is an explicit choice that is not questioned
    joints: list[str] | None = None
    names: list[str] | None = None  # feature names stored in the store (default: the joints, or the fields)
    resample: str | None = None  # nearest | linear | hold (default: the import's `resample`; action topics: hold)

    def validate(self, where: str) -> None:
        if self.resample is not None:
            check_method(self.resample, f"{where}.resample")


@dataclass
class ActionMapping(StreamMapping):
    """Where actions come from: a command topic, or the next observed state (for arms driven by position
    targets, e.g. a leader arm whose commands were not recorded)."""

    source: str = "topic"  # topic | next_state
    #: next_state only: store state[t+1] - state[t] instead of the absolute next state
    delta: bool = False


@dataclass
class CameraMapping:
    """A camera topic (sensor_msgs Image or CompressedImage) stored as observation.images.<name>."""

    topic: str = ""
    depth_max_m: float = 2.0  # depth images (16UC1 mm, 32FC1 m) become grey levels over [0, depth_max_m]


@dataclass
class EpisodeMapping:
    """Where episodes begin and end."""

    #: bag: every bag (file or rosbag2 folder) is one episode. marker: every message on `topic` starts an
    #: episode (std_msgs/Bool: true starts, false ends one); data before the first marker is dropped
    split: str = "bag"
    topic: str | None = None
    min_frames: int = 2  # shorter episodes are an error ...
    skip_short: bool = False  # ... unless this is set, then they are skipped and reported


@dataclass
class BagImportConfig(ImageOptions):
    """`robodream import-bag`: the mapping file plus command-line overrides."""

    out: str | None = None  # store path; default data/<first bag name>.zarr
    overwrite: bool = False
    fps: float = 10.0  # store frame rate: every stream is resampled to it
    resample: str = "linear"  # default for state/action streams: nearest | linear | hold (images: nearest)
    #: header: use header.stamp when a topic's messages have one (the sensor's time), else the bag's receive
    #: time; receive: always the time the recorder got the message
    clock: str = "header"
    robot_type: str = "unknown"
    task: str = ""
    state: StreamMapping = field(default_factory=StreamMapping)
    action: ActionMapping = field(default_factory=ActionMapping)
    cameras: dict[str, CameraMapping] = field(default_factory=dict)
    episodes: EpisodeMapping = field(default_factory=EpisodeMapping)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.fps > 0:
            raise RobodreamError(f"fps={self.fps}: choose a positive frame rate, e.g. fps=10")
        check_method(self.resample, "resample")
        if self.clock not in CLOCKS:
            raise RobodreamError(f"clock={self.clock!r}: choose one of {', '.join(CLOCKS)}")
        if not self.state.topic:
            raise RobodreamError("state.topic is empty: name the joint-state topic in the mapping file "
                                 "(see configs/import/ros2_example.yaml)")
        self.state.validate("state")
        self.action.validate("action")
        if self.action.source not in ACTION_SOURCES:
            raise RobodreamError(f"action.source={self.action.source!r}: choose one of {', '.join(ACTION_SOURCES)}")
        if self.action.source == "topic" and not self.action.topic:
            raise RobodreamError("action.topic is empty: name the command topic, or set action.source=next_state "
                                 "to use the next observed state as the action")
        if self.action.delta and self.action.source != "next_state":
            raise RobodreamError("action.delta=true only applies to action.source=next_state")
        for name, camera in self.cameras.items():
            if not camera.topic:
                raise RobodreamError(f"cameras.{name}.topic is empty: name the image topic")
            if not camera.depth_max_m > 0:
                raise RobodreamError(f"cameras.{name}.depth_max_m must be positive")
        if self.episodes.split not in SPLITS:
            raise RobodreamError(f"episodes.split={self.episodes.split!r}: choose one of {', '.join(SPLITS)}")
        if self.episodes.split == "marker" and not self.episodes.topic:
            raise RobodreamError("episodes.split=marker needs episodes.topic: the topic whose messages start episodes")
        if self.episodes.min_frames < 1:
            raise RobodreamError(f"episodes.min_frames={self.episodes.min_frames}: choose an integer >= 1")

    def stream_method(self, mapping: StreamMapping, role: str) -> str:
        """The resampling method of a stream: its own, or hold for commands, or the import's default."""
        if mapping.resample:
            return mapping.resample
        return "hold" if role == "action" else self.resample

