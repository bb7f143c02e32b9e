"""`TaskEnv`: a gymnasium environment over the PyBullet Panda scene and one task (design.md §3).

Observation dict (LeRobot keys):

- ``observation.images.front``: (H, W, 3) uint8 front camera
- ``observation.state``: float32 (11,) ``[ee_x, ee_y, ee_z, gripper_opening_m, q1..q7]``
- ``observation.environment_state``: float32 (10,) ``[cube xyz, cube quaternion xyzw, goal xyz]``
  (privileged simulator state, for scripted experts and analysis)

Action: float32 ``[ee_dx, ee_dy, ee_dz, gripper]``, see arm.py. Reward 1.0 when the task's success test holds,
else 0.0; ``terminated`` = success; ``truncated`` at ``max_steps``. ``info["action"]`` is the action actually
applied after clipping.

Determinism: `reset(seed)` returns the world to its initial state (built once with ``resetSimulation`` and
``deterministicOverlappingPairs``, then restored from a saved state with task objects removed, see
`PandaScene.reset`), and every random draw comes from generators derived from the episode
seed (one independent stream per purpose via ``SeedSequence.spawn``, so switching a randomisation on changes
nothing else about the episode). The same seed therefore gives bit-identical observations in a fresh env, in
an env that ran other episodes, and in another process.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from robodream.errors import RobodreamError
from robodream.features import ENV_STATE, IMAGE_PREFIX, STATE, Feature, vector_feature
from robodream.robots.sim.arm import CONTROL_HZ, ArmConfig, SimPandaArm, validate_action
from robodream.robots.sim.scene import Light, PandaScene
from robodream.robots.sim.tasks import TASKS

ENV_STATE_NAMES = [
    *("cube_x", "cube_y", "cube_z"),
    *("cube_qx", "cube_qy", "cube_qz", "cube_qw"),
    *("goal_x", "goal_y", "goal_z"),
]
FRONT = IMAGE_PREFIX + "front"


@dataclass
class RandomizationConfig:
    """Per-episode domain randomisation; all off by default. Values are drawn from the episode seed."""

    object_color: bool = False  # cube / target colours
    light: bool = False  # light direction/colour/ambient of the tiny renderer
    camera_jitter: bool = False  # camera eye/target offset per episode
    camera_jitter_m: float = 0.02

    def __post_init__(self) -> None:
        if not 0 <= self.camera_jitter_m <= 0.2:
            raise RobodreamError(f"camera_jitter_m={self.camera_jitter_m}: choose a value in [0, 0.2] metres")


@dataclass
class EnvConfig:
    """Which task, image size and episode limit; validated on construction."""

    task: str = "push_cube"
    image_size: int = 64
    max_steps: int | None = None  # None = the task's default
    randomization: RandomizationConfig = field(default_factory=RandomizationConfig)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise RobodreamError(f"unknown task '{self.task}': choose one of {', '.join(TASKS)}")
        if not isinstance(self.image_size, int) or not 16 <= self.image_size <= 512:
            raise RobodreamError(f"image_size={self.image_size!r}: choose an integer in [16, 512]")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps < 1):
            raise RobodreamError(f"max_steps={self.max_steps!r}: choose an integer >= 1, or null for the default")
        if isinstance(self.randomization, dict):  # e.g. straight from a YAML mapping
            self.randomization = RandomizationConfig(**self.randomization)


def make_env(cfg: EnvConfig) -> TaskEnv:
    """Build the PyBullet task environment described by ``cfg``."""
    return TaskEnv(cfg)


class TaskEnv(gym.Env):
    """A Panda task in PyBullet with a gymnasium interface; see the module docstring."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": CONTROL_HZ}
    fps = CONTROL_HZ

    def __init__(self, cfg: EnvConfig | None = None, arm_config: ArmConfig | None = None):
        self.cfg = cfg or EnvConfig()
        spec = TASKS[self.cfg.task]
        self.task_name = self.cfg.task
        self.max_steps = self.cfg.max_steps or spec.max_steps
        self.render_mode = "rgb_array"
        self.scene = PandaScene(self.cfg.image_size)
        self.arm = SimPandaArm(self.scene, arm_config)
        self.robot_type = self.arm.robot_type
        self.task = spec.cls()
        self.max_delta = self.arm.config.max_delta

        self.features: dict[str, Feature] = {
            **self.arm.observation_features,
            ENV_STATE: vector_feature(ENV_STATE_NAMES),
            **self.arm.action_features,
        }
        #: the nominal camera; with camera_jitter each episode's actual camera is in reset()'s info["cameras"]
        self.cameras: dict[str, dict] = {"front": self.scene.camera_info()}
        size = self.cfg.image_size
        self.observation_space = spaces.Dict(
            {
                FRONT: spaces.Box(0, 255, (size, size, 3), np.uint8),
                STATE: spaces.Box(-np.inf, np.inf, (len(self.features[STATE]["names"]),), np.float32),
                ENV_STATE: spaces.Box(-np.inf, np.inf, (len(ENV_STATE_NAMES),), np.float32),
            }
        )
        md = self.max_delta
        self.action_space = spaces.Box(
            np.array([-md, -md, -md, 0.0], np.float32), np.array([md, md, md, 1.0], np.float32), dtype=np.float32
        )
        self._steps: int | None = None  # None until the first reset
        self._camera_on = True  # False inside without_camera()

    # ---- gymnasium API -------------------------------------------------------------------------------------
    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        """Start an episode. The same ``seed`` always gives the same episode; ``seed=None`` draws a fresh one
        (reported in ``info["seed"]`` so the episode can be replayed)."""
        if seed is None:
            # gymnasium semantics: unseeded resets continue the env's generator (entropy-seeded at first use)
            seed = int(self.np_random.integers(0, 2**31 - 1))
        elif not isinstance(seed, (int, np.integer)) or seed < 0:
            raise RobodreamError(f"seed={seed!r}: use a non-negative integer (or None for a random one)")
        seed = int(seed)
        if not self.scene.is_connected:
            raise RobodreamError("this env was closed: make a new one with make_env(cfg)")
        super().reset(seed=seed)
        task_ss, color_ss, light_ss, camera_ss = np.random.SeedSequence(seed).spawn(4)

        self.scene.reset()
        self.arm.connect()  # puts the arm at home in the fresh scene
        self._randomize_view(np.random.default_rng(light_ss), np.random.default_rng(camera_ss))
        colors = self._random_colors(np.random.default_rng(color_ss))
        self.task.build(self.scene, np.random.default_rng(task_ss), colors)
        # Let contacts settle (cube on table, fingers) before the first frame; part of the fixed sequence.
        self.scene.step(12)

        self._steps = 0
        obs = self._observe()
        info = {"success": self.task.success(), "seed": seed, "cameras": {"front": self.scene.camera_info()}}
        return obs, info

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        """Apply one 10 Hz control step."""
        if self._steps is None:
            raise RobodreamError("step() called before reset() (or after close()): call env.reset(seed=...) first")
        a = validate_action(action, self.action_space.shape[0])
        applied = self.arm.send_action(a)
        self._steps += 1
        obs = self._observe()
        success = self.task.success()
        terminated = success
        truncated = (not terminated) and self._steps >= self.max_steps
        info = {"success": success, "action": applied, "steps": self._steps}
        return obs, float(success), terminated, truncated, info

    def render(self) -> np.ndarray:
        """The front camera image (rgb_array)."""
        return self.scene.render()

    @contextmanager
    def without_camera(self) -> Iterator[None]:
        """Inside this block observations carry no camera image (proprioceptive and environment state only).
        For replays that need the outcome, not the frames: the renderer is ~90% of a step's time, and it does not
        touch the physics, so the episode unfolds exactly as with the camera on."""
        self._camera_on = False
        try:
            yield
        finally:
            self._camera_on = True

    def close(self) -> None:
        """Release the PyBullet client; the env cannot be used afterwards."""
        self.scene.close()
        self._steps = None

    # ---- helpers -------------------------------------------------------------------------------------------
    def _observe(self) -> dict[str, np.ndarray]:
        obs = self.arm.get_observation() if self._camera_on else {STATE: self.arm.state()}
        obs[ENV_STATE] = self.task.env_state()
        return obs

    def _random_colors(self, rng: np.random.Generator) -> dict | None:
        if not self.cfg.randomization.object_color:
            return None
        # uniform RGB, kept away from black and white so the objects never look like holes or highlights
        cube, target = rng.uniform(0.15, 0.95, size=(2, 3))
        return {"cube": (*cube, 1.0), "target": (*target, 1.0)}

    def _randomize_view(self, light_rng: np.random.Generator, camera_rng: np.random.Generator) -> None:
        r = self.cfg.randomization
        if r.light:
            direction = light_rng.uniform([-1.0, -1.0, 0.5], [1.0, 1.0, 1.5])
            self.scene.light = Light(
                direction=tuple(direction.tolist()),
                color=tuple(light_rng.uniform(0.7, 1.0, 3).tolist()),
                ambient=float(light_rng.uniform(0.4, 0.8)),
                diffuse=float(light_rng.uniform(0.2, 0.5)),
                specular=float(light_rng.uniform(0.0, 0.1)),
            )
        if r.camera_jitter:
            nominal = self.scene.nominal_camera
            j = r.camera_jitter_m
            eye = np.asarray(nominal.eye) + camera_rng.uniform(-j, j, 3)
            target = np.asarray(nominal.target) + camera_rng.uniform(-j, j, 3)
            self.scene.set_camera(replace(nominal, eye=tuple(eye.tolist()), target=tuple(target.tolist())))
