"""The safety layer in front of the in-process PyBullet task env, so a policy evaluated in simulation passes
the same checks as one deployed through ROS 2 (robots/safety.py).

    env = make_safe_env(EnvConfig(task="push_cube"), SafetyConfig())
    obs, info = env.reset(seed=1000)
    obs, reward, terminated, truncated, info = env.step(action)   # info["safety"]: clamp/trip counts

End-effector checks run on the action (before the arm's own clipping), joint checks on the IK's joint
targets (through `SimPandaArm.joint_filter`); a latched e-stop turns every action into a hold. With the
default limits (the arm's own workspace and step) a nominal policy is never clamped, so results equal those
of the bare env.
"""

from __future__ import annotations

import numpy as np

from robodream.features import STATE
from robodream.robots.safety import SafetyConfig, SafetyLayer
from robodream.robots.sim.arm import ARM_JOINTS, CONTROL_HZ, validate_action
from robodream.robots.sim.bullet import p
from robodream.robots.sim.env import EnvConfig, TaskEnv, make_env


class SafeTaskEnv:
    """A `TaskEnv` behind a `SafetyLayer`; every other attribute is the wrapped env's."""

    def __init__(self, env: TaskEnv, safety: SafetyLayer):
        self.env, self.safety = env, safety
        self._last_gripper = 0.0
        env.arm.joint_filter = self._filter_joints

    def __getattr__(self, name: str):
        return getattr(self.env, name)

    def reset(self, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._obs, self._last_gripper = obs, 0.0
        return obs, info

    def step(self, action):
        a = validate_action(action) if np.all(np.isfinite(np.asarray(action, dtype=np.float64))) else action
        hold = self.safety.must_hold({})  # in-process observations are always fresh: only the e-stop applies
        if hold:
            safe = self.safety.hold_action(self._last_gripper)
        else:
            safe, _ = self.safety.clamp_ee(self._obs[STATE][:3], a)
        self._last_gripper = float(safe[3])
        obs, reward, terminated, truncated, info = self.env.step(safe.astype(np.float32))
        self._obs = obs
        info["safety"] = {"clamps": self.safety.clamps, "hold": hold}
        return obs, reward, terminated, truncated, info

    def _filter_joints(self, q_now: np.ndarray, q_target: np.ndarray) -> np.ndarray:
        return self.safety.clamp_joints(q_now, q_target)

    def close(self) -> None:
        self.env.close()


def panda_safety(cfg: SafetyConfig, client: int, panda: int) -> SafetyLayer:
    """A `SafetyLayer` with the simulated Panda's URDF joint limits (read from the loaded body)."""
    info = [p.getJointInfo(panda, j, physicsClientId=client) for j in ARM_JOINTS]
    return SafetyLayer(cfg, 1.0 / CONTROL_HZ, np.array([i[8] for i in info]), np.array([i[9] for i in info]),
                       np.array([i[11] for i in info]))


def make_safe_env(env_cfg: EnvConfig, safety_cfg: SafetyConfig | None = None) -> SafeTaskEnv:
    """The PyBullet task env of ``env_cfg`` behind the safety layer."""
    env = make_env(env_cfg)
    if env.scene.panda < 0:
        env.scene.reset()
    return SafeTaskEnv(env, panda_safety(safety_cfg or SafetyConfig(), env.scene.client, env.scene.panda))
