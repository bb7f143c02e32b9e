"""The planner's two dynamics: the world model (imagination) and PyBullet (the oracle), behind one interface.

    reset(seed)            a new episode (the oracle resets its mirror of the task env to the same seed)
    observe(obs)           the observation the agent acts on (the world model keeps it as context)
    executed(action)       the action the agent sent (the oracle applies it to its mirror)
    rollout(actions)       (K, H, A) sequences from now -> end-effector and cube positions, each (K, H, 3), and
                           the imagined frames (K, H, h, w, 3) where there are any (None for the oracle)

Both answer the same question from the same moment, so a planner's success with one against the other
measures what the learned model costs (the counterfactual planning gap), not the planner.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from robodream.errors import RobodreamError
from robodream.features import STATE


class SimDynamics:
    """PyBullet as the model: a mirror of the evaluated task env, kept in step by the executed actions and
    restored from a saved state before each imagined sequence; positions come from the true state, no rendering.
    Physics is deterministic (scene.py), so the mirror stays on the evaluated env's trajectory; `drift_m` is the
    largest end-effector distance seen between the two, to show it."""

    def __init__(self, env_cfg):
        from robodream.robots.sim.env import make_env

        self.env = make_env(env_cfg)
        self.action_dim = int(self.env.action_space.shape[0])
        self.drift_m = 0.0

    def reset(self, seed: int | None) -> None:
        if seed is None:
            raise RobodreamError("the oracle planner needs the episode seed to mirror the task env")
        self.env.reset(seed=int(seed))

    def observe(self, obs: dict[str, np.ndarray]) -> None:
        if STATE in obs:
            ee = np.asarray(obs[STATE][:3], np.float64)
            self.drift_m = max(self.drift_m, float(np.linalg.norm(ee - self.env.arm.ee_position())))

    def executed(self, action: np.ndarray) -> None:
        self.env.arm.send_action(action)

    def rollout(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, None]:
        import pybullet as p

        client, arm, task = self.env.scene.client, self.env.arm, self.env.task
        count, horizon = actions.shape[:2]
        ee, cube = np.empty((count, horizon, 3)), np.empty((count, horizon, 3))
        saved = p.saveState(physicsClientId=client)
        try:
            for k in range(count):
                p.restoreState(saved, physicsClientId=client)
                for t in range(horizon):
                    arm.send_action(actions[k, t])
                    ee[k, t] = arm.ee_position()
                    cube[k, t] = task.cube_pose()[0]
            p.restoreState(saved, physicsClientId=client)
        finally:
            p.removeState(saved, physicsClientId=client)
        return ee, cube, None

    def close(self) -> None:
        self.env.close()


class WorldModelDynamics:
    """The world model as the model: the last K real (or imagined) observations as context, all K sequences
    imagined in one batch per step (`WorldModelEnv` with num_envs = samples), the cube read from the imagined
    frames by the probe and the end effector from the imagined state."""

    def __init__(self, cfg, env_cfg):
        import torch

        from robodream.pipeline.policy.imagination import check_fit
        from robodream.robots.sim.env import make_env
        from robodream.world_models.env import WorldModelEnv
        from robodream.world_models.model import WorldModel
        from robodream.world_models.probe import StateSuccessProbe

        torch.set_num_threads(cfg.threads)
        model = WorldModel.from_pretrained(cfg.wm)
        self.probe = StateSuccessProbe.from_pretrained(cfg.probe)
        sim = make_env(env_cfg)
        try:
            check_fit(model, self.probe, sim)
            self.action_dim = int(sim.action_space.shape[0])
        finally:
            sim.close()
        if not model.config.predict_state:
            raise RobodreamError("the planner reads the end effector from the imagined state: train the world model "
                                 "with predict_state=true")
        self.seed = cfg.seed
        self.world = WorldModelEnv(model, num_envs=cfg.samples, max_steps=10**9, seed=cfg.seed,
                                   num_sampling_steps=cfg.num_sampling_steps)
        self.image_key = model.config.image_key
        k = model.config.context_frames
        self.frames: deque = deque(maxlen=k)
        self.actions: deque = deque(maxlen=k)
        self.states: deque = deque(maxlen=k)
        self._pending = np.zeros(self.action_dim, np.float32)  # "hold": the padding at an episode start

    def reset(self, seed: int | None) -> None:
        from robodream.world_models.model import set_seed_generator

        for history in (self.frames, self.actions, self.states):
            history.clear()
        self._pending = np.zeros(self.action_dim, np.float32)
        self.world.generator = set_seed_generator(self.seed + (seed or 0), self.world.device)

    def observe(self, obs: dict[str, np.ndarray]) -> None:
        # actions[i] led to frames[i] (WorldModelEnv.reset_from); an episode's first frame is repeated K times
        copies = self.frames.maxlen if not self.frames else 1
        for _ in range(copies):
            self.frames.append(np.asarray(obs[self.image_key]))
            self.actions.append(self._pending)
            self.states.append(np.asarray(obs[STATE], np.float32))

    def executed(self, action: np.ndarray) -> None:
        self._pending = np.asarray(action, np.float32)

    def rollout(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        count, horizon = actions.shape[:2]
        if count != self.world.num_envs:
            raise RobodreamError(f"the world-model dynamics imagine {self.world.num_envs} sequences at once, got "
                                 f"{count}")

        def batch(items) -> np.ndarray:
            return np.repeat(np.stack(items)[None], count, axis=0)

        self.world.reset_from(batch(self.frames), batch(self.actions), batch(self.states))
        frames, ee = [], np.empty((count, horizon, 3))
        for t in range(horizon):
            obs = self.world.step(actions[:, t])[0]
            frames.append(obs[self.image_key])
            ee[:, t] = obs[STATE][:, :3]
        frames = np.stack(frames, axis=1)
        seen = self.probe.predict(frames.reshape(-1, *frames.shape[2:]))
        return ee, seen["cube"].reshape(count, horizon, 3), frames

    def close(self) -> None:
        self.world.close()
