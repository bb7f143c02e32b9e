"""Forward and inverse kinematics of an arm's URDF, with pybullet (DIRECT mode) as the kinematics library.

A real arm is driven in joint space (ros2_control controllers take joint positions) while robodream's
policies act in end-effector space (``[ee_dx, ee_dy, ee_dz, gripper]``), so the ROS 2 arm needs FK (to report
``observation.state`` like the simulator does) and IK (to turn an end-effector target into joint targets).
This module loads the URDF into a private headless pybullet client — no physics is stepped, only link
frames are computed — and reads the joint limits (position and velocity) the safety layer enforces.

The IK is the one `SimPandaArm` uses (damped least squares with null-space pull towards a rest pose, the tool
held at a fixed orientation, refined from its own answer a few times), so a policy deployed through ROS
sees the same arm behaviour as in direct PyBullet evaluation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robodream.errors import RobodreamError


@dataclass(frozen=True)
class JointLimits:
    """Per-joint limits read from the URDF, in the order of the joints asked for."""

    lower: np.ndarray  # rad (or m for prismatic joints)
    upper: np.ndarray
    velocity: np.ndarray  # rad/s; inf where the URDF gives none


def resolve_urdf(urdf: str) -> Path:
    """The URDF file: an existing path, or a path inside pybullet_data (e.g. ``franka_panda/panda.urdf``)."""
    path = Path(os.path.expanduser(urdf))
    if path.is_file():
        return path
    import pybullet_data

    bundled = Path(pybullet_data.getDataPath()) / urdf
    if bundled.is_file():
        return bundled
    raise RobodreamError(f"URDF {urdf} not found (neither a file nor inside pybullet_data); set robot.urdf to the "
                         "arm's URDF (e.g. `xacro robot.urdf.xacro > arm.urdf`)")


class Kinematics:
    """FK/IK of one URDF for the named arm joints and end-effector link. Close with `close()`."""

    def __init__(self, urdf: str, joints: list[str], ee_link: str, rest_pose: list[float] | None = None,
                 tool_rpy: tuple[float, float, float] | None = (np.pi, 0.0, 0.0), ik_iterations: int = 3):
        from robodream.robots.sim.bullet import p

        self._p = p
        self.urdf = resolve_urdf(urdf)
        self.client = p.connect(p.DIRECT)
        try:
            self.body = p.loadURDF(str(self.urdf), useFixedBase=True, physicsClientId=self.client)
        except p.error as exc:
            p.disconnect(physicsClientId=self.client)
            raise RobodreamError(f"cannot load URDF {self.urdf}: {exc}") from None
        info = [p.getJointInfo(self.body, j, physicsClientId=self.client)
                for j in range(p.getNumJoints(self.body, physicsClientId=self.client))]
        by_name = {i[1].decode(): i for i in info}
        links = {i[12].decode(): i[0] for i in info}
        missing = [j for j in joints if j not in by_name]
        if missing:
            self.close()
            raise RobodreamError(f"joints {missing} are not in {self.urdf} (it has {sorted(by_name)}); "
                                 "fix robot.joints")
        if ee_link not in links:
            self.close()
            raise RobodreamError(f"end-effector link {ee_link!r} is not in {self.urdf} (links: {sorted(links)}); "
                                 "fix robot.kinematics.ee_link")
        self.joint_names = list(joints)
        self.ee_index = links[ee_link]
        #: every movable joint (pybullet's IK works on all of them), and where our arm joints sit among them
        self._movable = [i[0] for i in info if i[2] != p.JOINT_FIXED]
        self._movable_names = [by_name_i[1].decode() for by_name_i in info if by_name_i[2] != p.JOINT_FIXED]
        self._arm_slots = [self._movable_names.index(j) for j in joints]
        lower = np.array([i[8] for i in info if i[2] != p.JOINT_FIXED], dtype=np.float64)
        upper = np.array([i[9] for i in info if i[2] != p.JOINT_FIXED], dtype=np.float64)
        unbounded = lower > upper  # URDF continuous joints come back as lower=0 > upper=-1
        lower[unbounded], upper[unbounded] = -2 * np.pi, 2 * np.pi
        velocity = np.array([i[11] if i[11] > 0 else np.inf for i in info if i[2] != p.JOINT_FIXED])
        self._lower, self._upper = lower, upper
        self.limits = JointLimits(lower[self._arm_slots], upper[self._arm_slots], velocity[self._arm_slots])
        self._rest = (lower + upper) / 2
        if rest_pose is not None:
            if len(rest_pose) != len(joints):
                self.close()
                raise RobodreamError(f"robot.kinematics.rest_pose has {len(rest_pose)} values for {len(joints)} joints")
            self._rest[self._arm_slots] = rest_pose
        self._tool = None if tool_rpy is None else tuple(p.getQuaternionFromEuler(list(tool_rpy)))
        self.ik_iterations = int(ik_iterations)
        # pybullet 3.2.7 places the base at its inertial frame (not its link frame) when IK is given
        # currentPositions; targets are shifted by that offset to compensate (see SimPandaArm._ik).
        self._base_offset = np.asarray(p.getDynamicsInfo(self.body, -1, physicsClientId=self.client)[3])

    def _full(self, q: np.ndarray, others: dict[str, float] | None = None) -> list[float]:
        """All movable joints: ``q`` for the arm joints, ``others`` (e.g. fingers) or the rest pose elsewhere."""
        full = self._rest.copy()
        for name, value in (others or {}).items():
            if name in self._movable_names:
                full[self._movable_names.index(name)] = value
        full[self._arm_slots] = q
        return full.tolist()

    def fk(self, q: np.ndarray) -> np.ndarray:
        """End-effector position (base frame, m) at arm joint positions ``q``."""
        p, c = self._p, self.client
        for joint, value in zip(self._movable, self._full(np.asarray(q, dtype=np.float64)), strict=True):
            p.resetJointState(self.body, joint, value, physicsClientId=c)
        return np.asarray(p.getLinkState(self.body, self.ee_index, computeForwardKinematics=1, physicsClientId=c)[4])

    def ik(self, target: np.ndarray, q_now: np.ndarray, others: dict[str, float] | None = None) -> np.ndarray:
        """Arm joint positions that put the end effector at ``target`` (with the tool orientation), starting
        from ``q_now`` so that the solution is the nearby branch; refined ``ik_iterations`` times."""
        p = self._p
        q = self._full(np.asarray(q_now, dtype=np.float64), others)
        goal = (np.asarray(target, dtype=np.float64) - self._base_offset).tolist()
        ranges = (self._upper - self._lower).tolist()
        for _ in range(self.ik_iterations):
            kwargs = dict(lowerLimits=self._lower.tolist(), upperLimits=self._upper.tolist(), jointRanges=ranges,
                          restPoses=self._rest.tolist(), maxNumIterations=20, residualThreshold=1e-4,
                          currentPositions=q, physicsClientId=self.client)
            if self._tool is None:
                q = list(p.calculateInverseKinematics(self.body, self.ee_index, goal, **kwargs))
            else:
                q = list(p.calculateInverseKinematics(self.body, self.ee_index, goal, self._tool, **kwargs))
        return np.asarray(q, dtype=np.float64)[self._arm_slots]

    def close(self) -> None:
        """Release the pybullet client (idempotent)."""
        if self.client >= 0:
            if self._p.isConnected(physicsClientId=self.client):
                self._p.disconnect(physicsClientId=self.client)
            self.client = -1
