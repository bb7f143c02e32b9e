"""Evaluation in imagination: the harness's env interface served by the world model and the probe.

`robodream eval policy=... env=world_model imagination.wm=runs/wm imagination.probe=runs/probe` runs the same
loop as a PyBullet evaluation (harness.py), but every step is imagined:

- episode `seed` starts from the PyBullet task env's first observation for that seed (the first frame
  repeated K times, as the world model saw episode starts in training), so imagination and simulation are
  judged on the same initial states;
- each action goes to `WorldModelEnv.step`, which samples the next frame and state;
- the probe reads every imagined frame: its success probability (> `success_threshold`) is the episode's
  success signal (with `success_radius`, so is its cube estimate within that radius of the goal, the way the
  sim task checks success on the true cube), and its cube position fills ``observation.environment_state``
  so that agents which need the privileged state (the scripted experts) can act in imagination too. The goal
  does not move during an episode, so it is taken from the initial state the episode starts from, as a
  deployed robot is given its target, rather than re-estimated from every imagined frame with the probe's
  ~2 cm error.

The factory is picklable and builds everything inside each evaluation worker.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robodream.config_fields import runtime
from robodream.errors import RobodreamError
from robodream.features import ENV_STATE
from robodream.robots.sim.env import EnvConfig

#: identity quaternion for the cube orientation, which the probe does not predict
_NO_ROTATION = np.array([0.0, 0.0, 0.0, 1.0], dtype=np.float32)
#: where the goal sits in the task envs' environment_state: [cube xyz, cube quaternion, goal xyz]
GOAL = slice(7, 10)


@dataclass
class ImaginationConfig:
    """Where the world model and the probe come from, and how success is read."""

    wm: str | None = runtime(None)  # world-model run directory (train-wm out=) or its model/ export
    probe: str | None = runtime(None)  # probe directory (train-probe out=)
    success_threshold: float = 0.5  # success when the probe's success probability exceeds this
    #: also a success when the probe's cube estimate lies within this distance (m, in xy) of the goal, e.g. the
    #: task's target radius (push_cube: 0.035). None: the success probability alone decides.
    success_radius: float | None = None
    num_sampling_steps: int | None = None  # override the world model's denoising steps
    threads: int = runtime(1)  # torch threads per evaluation worker (one worker per core)
    #: evaluate even when the world model or the probe fails its gates (pipeline/world_model/gates.py); the
    #: results then record what they were forced past
    force: bool = runtime(False)

    def __post_init__(self) -> None:
        if not 0 < self.success_threshold < 1:
            raise RobodreamError(f"imagination.success_threshold must be in (0, 1), got {self.success_threshold}")
        if self.success_radius is not None and self.success_radius <= 0:
            raise RobodreamError(f"imagination.success_radius must be > 0 (m) or null, got {self.success_radius}")

    def require(self) -> None:
        """One clear error when imagination is asked for without its models."""
        missing = [name for name in ("wm", "probe") if getattr(self, name) is None]
        if missing:
            raise RobodreamError(f"env=world_model needs {' and '.join(f'imagination.{m}=<dir>' for m in missing)} "
                                 "(a train-wm run and a train-probe run)")

    def gates(self, command: str) -> list[str]:
        """The gate problems of the world model and probe (one-line refusal unless `force`)."""
        from robodream.pipeline.world_model.gates import check_gates

        return check_gates(self.wm, self.probe, self.force, command)


class ImaginedTaskEnv:
    """A `WorldModelEnv` of one rollout, started from the sim task's initial observations, judged by the probe."""

    def __init__(self, env_cfg: EnvConfig, cfg: ImaginationConfig):
        import torch

        from robodream.robots.sim.env import make_env
        from robodream.world_models.env import WorldModelEnv
        from robodream.world_models.model import WorldModel
        from robodream.world_models.probe import StateSuccessProbe

        cfg.require()
        torch.set_num_threads(cfg.threads)
        self.cfg = cfg
        self.sim = make_env(env_cfg)
        model = WorldModel.from_pretrained(cfg.wm)
        self.probe = StateSuccessProbe.from_pretrained(cfg.probe)
        check_fit(model, self.probe, self.sim)
        self.fps = self.sim.fps
        self.max_steps = self.sim.max_steps
        self.world = WorldModelEnv(model, num_envs=1, max_steps=self.max_steps, fps=self.fps,
                                   num_sampling_steps=cfg.num_sampling_steps,
                                   initial_observation=self._initial_observation, success_fn=self._judge)
        self.features = {**self.world.features, ENV_STATE: dict(self.sim.features[ENV_STATE])}
        self._env_state: np.ndarray | None = None
        self._goal = np.zeros(3, np.float32)  # set by every reset, before the probe first judges a frame

    def _initial_observation(self, seed: int) -> dict[str, np.ndarray]:
        obs, _ = self.sim.reset(seed=seed)
        self._goal = np.asarray(obs[ENV_STATE][GOAL], dtype=np.float32)
        return obs

    def _judge(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Success per rollout from the probe; keeps its positions for the observation's environment_state."""
        labels = self.probe.predict(obs[self.world.image_key])
        count = len(labels["cube"])
        self._env_state = np.concatenate([labels["cube"], np.repeat(_NO_ROTATION[None], count, 0),
                                          np.repeat(self._goal[None], count, 0)], axis=1).astype(np.float32)
        success = labels["success_prob"] > self.cfg.success_threshold
        if self.cfg.success_radius is not None:
            on_goal = np.linalg.norm(labels["cube"][:, :2] - self._goal[None, :2], axis=1) <= self.cfg.success_radius
            success = success | on_goal
        return success

    def _with_env_state(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {**obs, ENV_STATE: self._env_state[0]}

    def reset(self, seed: int | None = None, options: dict | None = None):
        obs, info = self.world.reset(seed=seed)
        return self._with_env_state(obs), info

    def step(self, action: np.ndarray):
        obs, reward, terminated, truncated, info = self.world.step(np.asarray(action, dtype=np.float32))
        return self._with_env_state(obs), float(reward), bool(terminated), bool(truncated), info

    def close(self) -> None:
        self.world.close()
        self.sim.close()


def check_fit(model, probe, sim) -> None:
    """Refuse a world model or probe that does not read the task env's frames."""
    image_key = model.config.image_key
    frame = tuple(sim.features[image_key]["shape"]) if image_key in sim.features else None
    wanted = (model.config.image_size, model.config.image_size, 3)
    if frame != wanted:
        raise RobodreamError(f"the world model imagines {image_key} of shape {wanted}, the task env gives {frame}: "
                             f"evaluate with env.image_size={model.config.image_size}")
    if probe.config.image_size != model.config.image_size:
        raise RobodreamError(f"the probe reads {probe.config.image_size}px frames, the world model imagines "
                             f"{model.config.image_size}px ones: train the probe on the world model's data")
    names = {t.name for t in probe.config.targets}
    if not {"cube", "goal"} <= names:
        raise RobodreamError(f"the probe predicts {sorted(names)}; evaluation in imagination needs cube and goal")


@dataclass
class ImaginedEnvFactory:
    """Picklable `make_env` for evaluation workers."""

    env: EnvConfig
    imagination: ImaginationConfig

    def __call__(self) -> ImaginedTaskEnv:
        return ImaginedTaskEnv(self.env, self.imagination)
