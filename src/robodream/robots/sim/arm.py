"""`SimPandaArm`: the Robot interface over a simulated Franka Panda (end-effector delta control at 10 Hz).

Action: ``[ee_dx, ee_dy, ee_dz, gripper]``; deltas in metres per control step, gripper in [0, 1]
(0 = open, 1 = closed). Each control step the target ``ee + delta`` (clipped to the action limits and to a
workspace box) is turned into joint targets by pybullet's damped-least-squares IK with the gripper pointing
down at a fixed yaw, and the joints track it under position control for 24 physics substeps (0.1 s at
240 Hz). The target is taken relative to the *measured* end effector, not to the previous target, so the
outcome of an action depends only on the observed state (a Markov action space, which is what policies and
the world model learn from), and a blocked arm cannot wind up a growing error.

State: ``[ee_x, ee_y, ee_z, gripper_opening_m, q1..q7]`` in the robot base frame (= world frame, see scene.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from robodream.errors import RobodreamError
from robodream.features import ACTION, IMAGE_PREFIX, STATE, Feature, image_feature, vector_feature
from robodream.robots.robot import Robot
from robodream.robots.sim.bullet import p
from robodream.robots.sim.scene import PHYSICS_HZ, TABLE_TOP, PandaScene

ARM_JOINTS = list(range(7))
FINGER_JOINTS = [9, 10]
#: panda_grasptarget: the point between the fingertips, the end effector we control
EE_LINK = 11
CONTROL_HZ = 10
SUBSTEPS = PHYSICS_HZ // CONTROL_HZ  # 24
FINGER_OPEN = 0.04  # per finger, metres (URDF limit)

STATE_NAMES = ["ee_x", "ee_y", "ee_z", "gripper_opening_m"] + [f"q{i}" for i in range(1, 8)]
ACTION_NAMES = ["ee_dx", "ee_dy", "ee_dz", "gripper"]

# Joint limits from panda.urdf (7 arm joints + 2 fingers), needed for null-space IK.
_LOWER = [-2.9671, -1.8326, -2.9671, -3.1416, -2.9671, -0.0873, -2.9671, 0.0, 0.0]
_UPPER = [2.9671, 1.8326, 2.9671, 0.0, 2.9671, 3.8223, 2.9671, 0.04, 0.04]
_RANGES = [u - lo for u, lo in zip(_UPPER, _LOWER, strict=True)]
#: a comfortable elbow-up configuration with the hand pointing down above the workspace; null-space IK pulls
#: towards it so the redundant 7th DOF does not drift into joint limits over an episode.
REST_POSE = [0.0, -0.2, 0.0, -2.3, 0.0, 2.1, math.pi / 4, FINGER_OPEN, FINGER_OPEN]
#: gripper pointing straight down; with yaw 0 the fingers close along the world y axis.
DOWN = tuple(p.getQuaternionFromEuler([math.pi, 0.0, 0.0]))
_ARM_FORCES = [87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0]


@dataclass
class ArmConfig:
    """Control limits of the simulated arm."""

    #: largest end-effector move per control step (m); 0.04 m at 10 Hz = 0.4 m/s, a brisk but safe speed
    max_delta: float = 0.04
    #: box the end-effector target is clipped to (robot base frame, m); z_min keeps fingertips off the table
    workspace_low: tuple[float, float, float] = (0.25, -0.35, TABLE_TOP + 0.012)
    workspace_high: tuple[float, float, float] = (0.80, 0.35, TABLE_TOP + 0.40)
    #: end-effector position at the start of every episode
    home: tuple[float, float, float] = (0.45, 0.0, TABLE_TOP + 0.22)
    gripper_force: float = 40.0

    def __post_init__(self) -> None:
        if not 0 < self.max_delta <= 0.2:
            raise RobodreamError(f"max_delta={self.max_delta} m per step: choose a value in (0, 0.2]")
        if any(lo >= hi for lo, hi in zip(self.workspace_low, self.workspace_high, strict=True)):
            raise RobodreamError("workspace_low must be below workspace_high on every axis")


#: (m) how far the workspace and speed limits may move an action before it counts as clipped: far above the
#: rounding of a float32 action (~2e-9 m), far below anything physical
REPLAY_TOLERANCE = 1e-6


def validate_action(action: object, size: int = 4) -> np.ndarray:
    """``action`` as a float64 vector of ``size``, or a RobodreamError saying what is wrong with it."""
    a = np.asarray(action, dtype=np.float64)
    if a.shape != (size,):
        raise RobodreamError(
            f"action has shape {a.shape}; expected ({size},) = {ACTION_NAMES} "
            "(ee deltas in m per step, gripper 0=open..1=closed)"
        )
    if not np.all(np.isfinite(a)):
        raise RobodreamError(f"action {a.tolist()} contains NaN or inf; every entry must be finite")
    return a


class SimPandaArm(Robot):
    """A Panda in a `PandaScene`. Pass a scene to share it with a task (the env does); otherwise the arm
    creates and owns one on `connect`."""

    robot_type = "panda_sim"

    def __init__(self, scene: PandaScene | None = None, config: ArmConfig | None = None, image_size: int = 64):
        self.config = config or ArmConfig()
        self._scene = scene
        self._owns_scene = scene is None
        self._image_size = scene.image_size if scene is not None else image_size
        self._low = np.asarray(self.config.workspace_low)
        self._high = np.asarray(self.config.workspace_high)
        self._connected = False
        #: optional ``(q_now, q_target) -> q_safe`` applied to the IK's joint targets (the safety layer's joint
        #: stage, see robots/safety.py and robots/sim/safe_env.py)
        self.joint_filter: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None

    # ---- Robot interface -----------------------------------------------------------------------------------
    @property
    def scene(self) -> PandaScene:
        if self._scene is None:
            raise RobodreamError("SimPandaArm is not connected: call connect() first")
        return self._scene

    @property
    def observation_features(self) -> dict[str, Feature]:
        return {
            IMAGE_PREFIX + "front": image_feature(self._image_size, self._image_size),
            STATE: vector_feature(STATE_NAMES),
        }

    @property
    def action_features(self) -> dict[str, Feature]:
        return {ACTION: vector_feature(ACTION_NAMES)}

    @property
    def is_connected(self) -> bool:
        return self._connected and self._scene is not None and self._scene.is_connected

    def connect(self) -> None:
        """Start the simulator if the arm owns it, and put the arm at home."""
        if self._scene is None:
            self._scene = PandaScene(self._image_size)
            self._owns_scene = True
        if self._scene.panda < 0:
            self._scene.reset()
        self._connected = True
        self.go_home()

    def go_home(self) -> None:
        """Teleport the joints to the home pose (after a scene reset); deterministic: IK from REST_POSE."""
        s = self.scene
        # the base is fixed with identity orientation, so its inertial offset is the same in world coordinates
        self._base_inertial_offset = np.asarray(p.getDynamicsInfo(s.panda, -1, physicsClientId=s.client)[3])
        for j, q in zip(ARM_JOINTS + FINGER_JOINTS, REST_POSE, strict=True):
            p.resetJointState(s.panda, j, q, physicsClientId=s.client)
        for _ in range(3):  # a few IK refinements from the rest pose land the ee on the home point exactly
            q = self._ik(np.asarray(self.config.home))
            for j, qj in zip(ARM_JOINTS, q, strict=True):
                p.resetJointState(s.panda, j, qj, physicsClientId=s.client)
        self._command(q, 0.0)  # hold the home pose, gripper open
        for j in FINGER_JOINTS:  # grippy fingertips, so grasped cubes do not slip; the cube's friction is the task's
            p.changeDynamics(s.panda, j, lateralFriction=1.5, spinningFriction=0.003, physicsClientId=s.client)

    def get_observation(self) -> dict[str, np.ndarray]:
        """Front image and proprioceptive state."""
        return {IMAGE_PREFIX + "front": self.scene.render(), STATE: self.state()}

    def state(self) -> np.ndarray:
        """``[ee_x, ee_y, ee_z, gripper_opening_m, q1..q7]`` as float32 (no rendering)."""
        s = self.scene
        ee = p.getLinkState(s.panda, EE_LINK, computeForwardKinematics=1, physicsClientId=s.client)[4]
        joints = p.getJointStates(s.panda, ARM_JOINTS + FINGER_JOINTS, physicsClientId=s.client)
        q = [js[0] for js in joints]
        return np.asarray([*ee, q[7] + q[8], *q[:7]], dtype=np.float32)

    def ee_position(self) -> np.ndarray:
        s = self.scene
        return np.asarray(p.getLinkState(s.panda, EE_LINK, computeForwardKinematics=1, physicsClientId=s.client)[4])

    def clip_action(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The action after the action limits and the workspace box, and the end-effector target it implies."""
        a = validate_action(action)
        delta = np.clip(a[:3], -self.config.max_delta, self.config.max_delta)
        ee = self.ee_position()
        target = np.clip(ee + delta, self._low, self._high)
        # if contact ever pushed the ee outside the box, come back at most max_delta per step
        target = np.clip(target, ee - self.config.max_delta, ee + self.config.max_delta)
        sent = np.empty(4, dtype=np.float32)
        # The arm moves to ee + the float32 action it reports, and an action the limits leave unchanged (to within
        # REPLAY_TOLERANCE, above float32 rounding) is applied as given: so a recorded action, replayed, reaches the
        # very same target. Contacts amplify a 4e-9 m difference into a cube 5 cm elsewhere within 30 steps; with
        # targets from the unrounded clip, 3 of 10 recorded demos failed when their own actions were replayed.
        unclipped = np.all(np.abs(target - (ee + a[:3])) <= REPLAY_TOLERANCE)
        sent[:3] = a[:3] if unclipped else target - ee
        sent[3] = np.clip(a[3], 0.0, 1.0)
        return sent, ee + sent[:3].astype(np.float64)

    def send_action(self, action: np.ndarray) -> np.ndarray:
        """Apply one 10 Hz control step; returns the (clipped) action actually applied, float32."""
        if not self.is_connected:
            raise RobodreamError("SimPandaArm is not connected: call connect() before send_action()")
        sent, target = self.clip_action(action)
        q = self._ik(target)
        if self.joint_filter is not None:
            q = list(self.joint_filter(self.state()[4:].astype(np.float64), np.asarray(q)))
        self._command(q, float(sent[3]))
        self.scene.step(SUBSTEPS)
        return sent

    def disconnect(self) -> None:
        """Release the simulator if this arm created it."""
        if self._owns_scene and self._scene is not None:
            self._scene.close()
            self._scene = None
        self._connected = False

    def command_joints(self, arm_q: list[float], gripper: float, position_gain: float = 0.15) -> None:
        """Set the joint position targets directly (no IK, no clipping): for drivers that receive joint
        commands, e.g. the ROS 2 sim-arm node. ``gripper`` in [0, 1] (0 = open). A higher ``position_gain``
        suits setpoints that move smoothly (an interpolated trajectory), where it does not overshoot."""
        self._command(list(arm_q), float(gripper), position_gain)

    # ---- internals -----------------------------------------------------------------------------------------
    def _ik(self, target: np.ndarray, iterations: int = 3) -> list[float]:
        """Joint targets that put the end effector at ``target`` pointing down.

        pybullet's IK runs from ``currentPositions`` (so the simulation state is never touched) and is
        re-run from its own answer a few times: one call stops millimetres short on 4 cm moves, three land
        within ~1 mm (the rest is the null-space pull towards REST_POSE). Given ``currentPositions``, pybullet
        (3.2.7) places the base at its inertial frame instead of its link frame, so the target is shifted by
        the base's inertial offset (panda_link0: 5 cm in z) to compensate.
        """
        s = self.scene
        q = [js[0] for js in p.getJointStates(s.panda, ARM_JOINTS + FINGER_JOINTS, physicsClientId=s.client)]
        goal = (np.asarray(target) - self._base_inertial_offset).tolist()
        for _ in range(iterations):
            q = list(
                p.calculateInverseKinematics(
                    s.panda,
                    EE_LINK,
                    goal,
                    DOWN,
                    lowerLimits=_LOWER,
                    upperLimits=_UPPER,
                    jointRanges=_RANGES,
                    restPoses=REST_POSE,
                    maxNumIterations=20,
                    residualThreshold=1e-4,
                    currentPositions=q,
                    physicsClientId=s.client,
                )
            )
        return q[:7]

    def _command(self, arm_q: list[float], gripper: float, position_gain: float = 0.15) -> None:
        s = self.scene
        p.setJointMotorControlArray(
            s.panda,
            ARM_JOINTS,
            p.POSITION_CONTROL,
            targetPositions=arm_q,
            forces=_ARM_FORCES,
            positionGains=[position_gain] * 7,  # higher gains overshoot 1-3 cm on 4 cm steps
            physicsClientId=s.client,
        )
        finger = FINGER_OPEN * (1.0 - gripper)
        p.setJointMotorControlArray(
            s.panda,
            FINGER_JOINTS,
            p.POSITION_CONTROL,
            targetPositions=[finger, finger],
            forces=[self.config.gripper_force] * 2,
            physicsClientId=s.client,
        )
