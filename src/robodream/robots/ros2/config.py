"""`RobotConfig`: everything that makes one physical (or simulated) arm reachable over ROS 2.

Filled from ``configs/robot/<arm>.yaml`` (see configs/robot/panda.yaml for a commented example): topic
names and QoS of the joint-state broadcaster, the cameras and the controllers; joint names; the URDF and
end-effector link used for FK/IK; gripper mapping; the safety limits; e-stop, success and reset topics.
Validated on construction so that a wrong field is one line saying what to fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from robodream.errors import RobodreamError
from robodream.robots.safety import SafetyConfig

COMMAND_INTERFACES = ("joint_trajectory", "forward_position")
GRIPPER_INTERFACES = ("forward_position", "joint_trajectory", "none")
RELIABILITY = ("reliable", "best_effort")
DURABILITY = ("volatile", "transient_local")
RESET_MODES = ("topic", "operator", "none")


@dataclass
class QosConfig:
    """A ROS 2 QoS profile. Sensor streams default to best effort, which matches both best-effort camera
    drivers and reliable publishers (a reliable subscriber would not match a best-effort publisher)."""

    reliability: str = "reliable"
    durability: str = "volatile"
    depth: int = 10

    def __post_init__(self) -> None:
        if self.reliability not in RELIABILITY:
            raise RobodreamError(f"qos.reliability={self.reliability!r}: choose one of {', '.join(RELIABILITY)}")
        if self.durability not in DURABILITY:
            raise RobodreamError(f"qos.durability={self.durability!r}: choose one of {', '.join(DURABILITY)}")
        if self.depth < 1:
            raise RobodreamError(f"qos.depth={self.depth}: choose an integer >= 1")


def _sensor_qos() -> QosConfig:
    return QosConfig(reliability="best_effort", depth=5)


@dataclass
class JointStatesConfig:
    topic: str = "/joint_states"  # sensor_msgs/JointState (joint_state_broadcaster)
    qos: QosConfig = field(default_factory=_sensor_qos)


@dataclass
class CameraConfig:
    topic: str = "/camera/color/image_raw"  # sensor_msgs/Image, or CompressedImage with compressed: true
    compressed: bool = False
    qos: QosConfig = field(default_factory=_sensor_qos)


@dataclass
class CommandConfig:
    """How joint targets reach the arm's controller."""

    #: joint_trajectory: trajectory_msgs/JointTrajectory to a joint_trajectory_controller (one point per step);
    #: forward_position: std_msgs/Float64MultiArray to a forward_position_controller (positions in `joints` order)
    interface: str = "joint_trajectory"
    topic: str = "/arm_controller/joint_trajectory"
    #: time_from_start of the single trajectory point: the controller interpolates to it over this time
    time_from_start_s: float = 0.1
    qos: QosConfig = field(default_factory=lambda: QosConfig(depth=1))

    def __post_init__(self) -> None:
        if self.interface not in COMMAND_INTERFACES:
            raise RobodreamError(f"command.interface={self.interface!r}: choose one of {', '.join(COMMAND_INTERFACES)}")
        if self.time_from_start_s < 0:
            raise RobodreamError("command.time_from_start_s must be >= 0")


@dataclass
class GripperConfig:
    """The gripper: its joints in the joint states (opening = sum of their positions x state_scale) and the
    controller it is commanded through. Action 0 = open_position, 1 = closed_position (per command joint)."""

    interface: str = "forward_position"
    topic: str = "/gripper_controller/commands"
    joints: list[str] = field(default_factory=list)  # read from the joint states
    command_joints: list[str] = field(default_factory=list)  # joint_trajectory joint names / array length
    open_position: float = 0.04
    closed_position: float = 0.0
    state_scale: float = 1.0
    qos: QosConfig = field(default_factory=lambda: QosConfig(depth=1))

    def __post_init__(self) -> None:
        if self.interface not in GRIPPER_INTERFACES:
            raise RobodreamError(f"gripper.interface={self.interface!r}: choose one of {', '.join(GRIPPER_INTERFACES)}")
        if self.interface != "none" and not self.command_joints:
            raise RobodreamError("gripper.command_joints is empty: name the joint(s) the gripper controller takes, "
                                 "or set gripper.interface=none")


@dataclass
class KinematicsConfig:
    ee_link: str = "tool0"  # URDF link whose position is the end effector (ee_x, ee_y, ee_z)
    tool_rpy: list[float] | None = field(default_factory=lambda: [3.141592653589793, 0.0, 0.0])  # null: free
    rest_pose: list[float] | None = None  # null-space IK pulls towards it (one value per arm joint)
    ik_iterations: int = 3


@dataclass
class TopicsConfig:
    """Operator and bookkeeping topics (std_msgs)."""

    estop: str = "/robodream/estop"  # Bool: true latches the e-stop (false does NOT clear it)
    estop_reset: str = "/robodream/estop_reset"  # Empty: clears a latched e-stop
    success: str | None = None  # Bool: the task's success (a probe, a sim); null = none
    #: sim only: privileged [cube xyz, cube quat xyzw, goal xyz] as Float64MultiArray (scripted experts)
    environment_state: str | None = None


@dataclass
class ResetConfig:
    #: topic: publish the seed (Int64) on `topic`, wait for it on `done_topic` (sim-arm);
    #: operator: wait for Enter after the operator has reset the scene; none: just start
    mode: str = "operator"
    topic: str = "/sim/reset"
    done_topic: str = "/sim/reset_done"
    timeout_s: float = 10.0
    #: joint positions to move to before each episode (null: stay), taking home_time_s
    home: list[float] | None = None
    home_time_s: float = 4.0

    def __post_init__(self) -> None:
        if self.mode not in RESET_MODES:
            raise RobodreamError(f"reset.mode={self.mode!r}: choose one of {', '.join(RESET_MODES)}")


@dataclass
class RobotConfig:
    """One arm over ROS 2; see the module docstring and configs/robot/panda.yaml."""

    name: str = "arm"  # robot_type in episode stores
    urdf: str = ""  # a URDF file, or a path inside pybullet_data (e.g. franka_panda/panda.urdf)
    joints: list[str] = field(default_factory=list)  # arm joints, in the controller's order
    fps: float = 10.0  # control (policy) rate
    image_size: int = 64  # camera frames are centre-cropped and resized to this square size
    connect_timeout_s: float = 10.0  # wait this long for the first joint states / images
    joint_states: JointStatesConfig = field(default_factory=JointStatesConfig)
    cameras: dict[str, CameraConfig] = field(default_factory=dict)  # name -> observation.images.<name>
    command: CommandConfig = field(default_factory=CommandConfig)
    gripper: GripperConfig = field(default_factory=lambda: GripperConfig(interface="none"))
    kinematics: KinematicsConfig = field(default_factory=KinematicsConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    topics: TopicsConfig = field(default_factory=TopicsConfig)
    reset: ResetConfig = field(default_factory=ResetConfig)

    def __post_init__(self) -> None:
        if not self.urdf:
            return  # not configured (the default of commands that take robot=...): they call require()
        if not self.joints:
            raise RobodreamError("robot.joints is empty: list the arm joints in the controller's order")
        if not 0 < self.fps <= 1000:
            raise RobodreamError(f"robot.fps={self.fps}: choose a rate in (0, 1000] Hz")
        if not 16 <= self.image_size <= 512:
            raise RobodreamError(f"robot.image_size={self.image_size}: choose a size in [16, 512]")
        rest = self.kinematics.rest_pose
        if rest is not None and len(rest) != len(self.joints):
            raise RobodreamError(f"robot.kinematics.rest_pose has {len(rest)} values for {len(self.joints)} joints")
        if self.reset.home is not None and len(self.reset.home) != len(self.joints):
            raise RobodreamError(f"robot.reset.home has {len(self.reset.home)} values for {len(self.joints)} joints")

    def require(self) -> RobotConfig:
        """Self, or a RobodreamError when no robot config was given."""
        if not self.urdf:
            raise RobodreamError("name the arm: robot=configs/robot/<arm>.yaml (e.g. configs/robot/panda_sim.yaml, "
                                 "or a copy of configs/robot/panda.yaml for your arm)")
        return self

    @property
    def period_s(self) -> float:
        return 1.0 / self.fps
