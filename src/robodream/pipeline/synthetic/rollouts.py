"""Imagined episodes, a batch at a time: start from real context, act, imagine, label with the probe, filter.

A synthetic episode is the K real context frames of a real episode followed by up to `horizon` imagined
frames. Actions come from the recorded demonstration (perturbed by Gaussian noise), from a policy (receding
horizon, plus noise) acting on the imagined observations, or from the task's scripted expert acting on the
imagined world as the probe reads it (plus noise): a demonstrator in the dream. Every imagined frame is labelled by the
probe: cube and goal positions (observation.environment_state, with an unknown cube orientation stored as
the identity quaternion) and success (reward); observation.state comes from the world model's own state
prediction. The episode ends at the first frame the probe calls a success, as recorded episodes do.

Filters: success only; model uncertainty — each rollout is imagined M times under the same actions with
different noise, and rollouts whose samples disagree (mean per-pixel standard deviation above a threshold)
are dropped (the spread is kept in the episode origin either way); and, for rollouts that start from a
PyBullet recording, replay in the simulator — the rollout's actions are executed in PyBullet from the same
initial state and the rollout is kept only when they succeed there too (a check only a simulator can give: it
makes the labels right, not the imagined frames).
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from robodream.datasets.reader import EpisodeStore
from robodream.errors import RobodreamError
from robodream.features import ACTION, ENV_STATE, STATE
from robodream.world_models.env import WorldModelEnv
from robodream.world_models.model import WorldModel
from robodream.world_models.probe import StateSuccessProbe, sustained
from robodream.world_models.rollout import load_clips

IDENTITY_QUATERNION = np.array([0.0, 0.0, 0.0, 1.0], np.float32)


@dataclass
class RolloutSpec:
    index: int  # rollout number in the run (its seed is run seed + index)
    start_episode: int  # real episode whose first K frames start it


@dataclass
class GenerationSettings:
    source: str  # "demo-actions" or "policy"
    horizon: int
    noise: float  # in units of each action dimension's std in the real data
    seed: int
    samples: int  # M >= 1 imagined samples per rollout (uncertainty)
    max_spread: float | None
    success_only: bool
    stop_at_success: bool
    origin: dict  # provenance common to every rollout (model id, paths)
    success_frames: int = 1  # consecutive frames the probe must call a success (probe.sustained)
    replay_in_sim: bool = False  # keep only rollouts whose actions also succeed in PyBullet (SimReplayer)
    expert_cube: str = "probe"  # source=expert: the probe's reading of each imagined frame, or "start" (dead reckoning)


class ImaginedExperts:
    """The task's scripted expert, one per rollout, acting in imagination (source=expert).

    It reads the state it needs from the imagined world: the end effector from the world model's predicted
    observation.state, the cube from the probe's reading of the newest imagined frame, and the goal from the real
    episode the rollout started from (the goal does not move; a deployed robot is given it). The first action
    uses the real context's last state, which is exact. With `dead_reckon` the cube is never read from an
    imagined frame: the expert takes the real context's recorded cube and believes it slides ahead of the pusher
    (ExpertConfig.dead_reckon), so a probe that cannot place the imagined cube does not steer it.
    """

    def __init__(self, task: str, probe: StateSuccessProbe, image_key: str, env_state: np.ndarray,
                 state: np.ndarray, seeds: list[int], dead_reckon: bool = False):
        from robodream.robots.sim.experts import ExpertConfig, make_expert

        self.probe, self.image_key, self.dead_reckon = probe, image_key, dead_reckon
        self.experts = [make_expert(task, ExpertConfig(dead_reckon=dead_reckon)) for _ in seeds]
        for expert, seed in zip(self.experts, seeds, strict=True):
            expert.reset(seed)
        self.goal = env_state[:, 7:10]
        self.env_state, self.state = env_state, state

    def act(self, obs: dict[str, np.ndarray] | None) -> np.ndarray:
        """The next (B, A) actions; `obs` is the newest batched imagined observation (None for the first call)."""
        if obs is not None:
            if not self.dead_reckon:
                cube = self.probe.predict(obs[self.image_key])["cube"]
                rotation = np.repeat(IDENTITY_QUATERNION[None], len(cube), axis=0)
                self.env_state = np.concatenate([cube, rotation, self.goal], axis=1)
            self.state = obs[STATE]
        return np.stack([expert.act({STATE: self.state[b], ENV_STATE: self.env_state[b]})
                         for b, expert in enumerate(self.experts)]).astype(np.float32)


class BatchedPolicyRunner:
    """Receding-horizon execution of a policy over a batch of rollouts (PolicyRunner, batched)."""

    def __init__(self, policy, first_observations: list[dict[str, np.ndarray]], generator: torch.Generator):
        self.policy = policy
        self.generator = generator
        self.window = deque(first_observations, maxlen=policy.config.n_obs_steps)
        while len(self.window) < policy.config.n_obs_steps:  # edge padding, as in training windows
            self.window.appendleft(self.window[0])
        self.queue: deque[np.ndarray] = deque()

    def act(self, obs: dict[str, np.ndarray] | None) -> np.ndarray:
        """The next (B, A) actions; `obs` is the newest batched observation (None for the first call)."""
        if obs is not None:
            self.window.append(obs)
        if not self.queue:
            keys = self.policy.observation_keys
            window = {k: np.stack([o[k] for o in self.window], axis=1) for k in keys}
            chunk = self.policy.predict_action(window, generator=self.generator).float().cpu().numpy()
            self.queue.extend(np.moveaxis(chunk, 1, 0))  # (n_action_steps, B, A)
        return self.queue.popleft()


class RolloutGenerator:
    """Generates, labels and filters batches of rollouts; owns no files (the caller writes the episodes)."""

    def __init__(self, model: WorldModel, probe: StateSuccessProbe, store: EpisodeStore,
                 settings: GenerationSettings, policy=None, replayer=None):
        self.model, self.probe, self.store, self.settings, self.policy = model, probe, store, settings, policy
        self.replayer = replayer  # a SimReplayer (pipeline/synthetic/verify.py) when settings.replay_in_sim
        cfg = model.config
        self.k = cfg.context_frames
        self.image_key = cfg.image_key
        stats = store.stats()["features"][ACTION]
        self.action_low = np.asarray(stats["min"], np.float32)
        self.action_high = np.asarray(stats["max"], np.float32)
        self.action_std = np.asarray(stats["std"], np.float32)
        names = store.features[ACTION].get("names") or []
        self.gripper_dims = [i for i, name in enumerate(names) if "gripper" in name]

    def _noisy(self, actions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        noisy = actions + rng.normal(0.0, 1.0, actions.shape).astype(np.float32) * self.settings.noise * self.action_std
        return np.clip(noisy, self.action_low, self.action_high)  # stay inside what the model has seen

    def generate(self, specs: list[RolloutSpec]) -> tuple[list[dict], dict]:
        """Episodes to store (with their metadata) and counts for the batch."""
        s, k = self.settings, self.k
        episodes = [spec.start_episode for spec in specs]
        clips = load_clips(self.store, episodes, k, s.horizon, self.image_key, self.model.config.predict_state)
        batch = len(specs)
        rng = np.random.default_rng([s.seed, specs[0].index])
        env = WorldModelEnv(self.model, num_envs=batch, seed=s.seed + specs[0].index)
        history = clips.actions[:, np.clip(np.arange(-1, k - 1), 0, None)]
        states = clips.states[:, :k] if clips.states is not None else None
        obs = env.reset_from(clips.frames[:, :k], history, states)
        runner = None
        if s.source == "expert":
            runner = ImaginedExperts(self.store.task, self.probe, self.image_key, self._context_env_state(episodes),
                                     clips.states[:, k - 1], [s.seed + spec.index for spec in specs],
                                     dead_reckon=s.expert_cube == "start")
        elif s.source == "policy":
            context = [{self.image_key: clips.frames[:, i]} for i in range(k)]
            if states is not None:
                for i, frame in enumerate(context):
                    frame[STATE] = clips.states[:, i]
            runner = BatchedPolicyRunner(self.policy, context, env.generator or torch.Generator().manual_seed(s.seed))
        frames, predicted_states, applied = [], [], []
        for step in range(s.horizon):
            if runner is not None:
                action = self._noisy(runner.act(obs if step else None), rng)
            else:
                action = self._noisy(clips.actions[:, k - 1 + step], rng)
            obs, *_ = env.step(action)
            applied.append(action)
            frames.append(obs[self.image_key])
            predicted_states.append(obs.get(STATE))
        imagined = np.stack(frames, axis=1)  # (B, H, h, w, 3)
        actions = np.stack(applied, axis=1)
        spread = self._spread(clips, history, states, actions, imagined)
        labels = self.probe.predict(imagined.reshape(-1, *imagined.shape[2:]))
        success = sustained(labels["success_prob"].reshape(batch, s.horizon) > 0.5, s.success_frames)
        kept, dropped_success, dropped_spread, dropped_sim = [], 0, 0, 0
        for b, spec in enumerate(specs):
            if s.success_only and not success[b].any():
                dropped_success += 1
                continue
            if s.max_spread is not None and spread[b] > s.max_spread:
                dropped_spread += 1
                continue
            steps = self._sim_success_steps(clips, b, spec, actions[b]) if s.replay_in_sim else self._steps(success[b])
            if steps is None:  # PyBullet's replay failed
                dropped_sim += 1
                continue
            kept.append(self._episode(b, spec, clips, imagined, predicted_states, actions, labels, success, spread,
                                      steps, sim_success=True if s.replay_in_sim else None))
        return kept, {"generated": batch, "kept": len(kept), "dropped_not_success": dropped_success,
                      "dropped_uncertain": dropped_spread, "dropped_sim_failure": dropped_sim,
                      "successes": int(success.any(axis=1).sum())}

    def _steps(self, success: np.ndarray) -> int:
        """Imagined frames an episode keeps: up to the probe's first success with stop_at_success, else all."""
        if self.settings.stop_at_success and success.any():
            return int(np.argmax(success)) + 1
        return self.settings.horizon

    def _sim_success_steps(self, clips, b: int, spec: RolloutSpec, actions: np.ndarray) -> int | None:
        """Replay rollout `b` in PyBullet from its real start (the real context's actions, then the imagined
        ones): None when it fails there, else the imagined frames to keep (up to PyBullet's first success with
        stop_at_success: the labels are PyBullet's, the probe only annotates)."""
        context = clips.actions[b, : self.k - 1]
        replayed = self.replayer.replay(self.settings.origin["data"], spec.start_episode, clips.frames[b, 0],
                                        self.image_key, np.concatenate([context, actions]))
        if replayed.success is None:
            raise RobodreamError(f"filter.replay_in_sim: cannot replay rollouts from {self.settings.origin['data']} "
                                 f"in PyBullet: {replayed.why}")
        if not replayed.success:
            return None
        if not self.settings.stop_at_success:
            return self.settings.horizon
        return max(1, replayed.steps - len(context))  # a success within the real context keeps one imagined frame

    def _context_env_state(self, episodes: list[int]) -> np.ndarray:
        """(B, 10) recorded environment_state (cube, rotation, goal) at each rollout's last real context frame."""
        last = [min(self.k, int(self.store.episode_lengths[e])) - 1 for e in episodes]
        return np.stack([self.store.episode(e, [ENV_STATE])[ENV_STATE][i]
                         for e, i in zip(episodes, last, strict=True)]).astype(np.float32)

    def _spread(self, clips, history, states, actions, imagined) -> np.ndarray:
        """Mean per-pixel std (0-1 units) across M samples imagined under the same actions; 0 when M = 1."""
        s = self.settings
        if s.samples <= 1:
            return np.zeros(len(actions), np.float32)
        batch, m = len(actions), s.samples - 1
        env = WorldModelEnv(self.model, num_envs=batch * m, seed=s.seed + 1_000_003)
        rep = lambda x: None if x is None else np.repeat(x, m, axis=0)  # noqa: E731
        env.reset_from(rep(clips.frames[:, : self.k]), rep(history), rep(states))
        others = []
        for step in range(s.horizon):
            obs, *_ = env.step(rep(actions[:, step]))
            others.append(obs[self.image_key])
        samples = np.concatenate([imagined[:, None], np.stack(others, axis=1).reshape(batch, m, *imagined.shape[1:])],
                                 axis=1).astype(np.float32) / 255.0  # (B, M, H, h, w, 3)
        return samples.std(axis=1).mean(axis=(1, 2, 3, 4))

    def _episode(self, b, spec, clips, imagined, predicted_states, actions, labels, success, spread, steps,
                 sim_success: bool | None = None) -> dict:
        """Rollout `b` as an episode to store: the K real context frames and its first `steps` imagined ones; its
        success is PyBullet's replay when `sim_success` is given (filter.replay_in_sim), else the probe's."""
        s, k = self.settings, self.k
        last = steps - 1
        real = self.store.episode(spec.start_episode, [ENV_STATE, "reward"]) if ENV_STATE in self.store.features \
            else {}
        hold = np.zeros_like(actions[b, last])
        hold[self.gripper_dims] = actions[b, last, self.gripper_dims]
        data = {
            self.image_key: np.concatenate([clips.frames[b, :k], imagined[b, :steps]]),
            ACTION: np.concatenate([clips.actions[b, : k - 1], actions[b, :steps], hold[None]]).astype(np.float32),
        }
        if clips.states is not None:
            imagined_states = np.stack([predicted_states[t][b] for t in range(steps)])
            data[STATE] = np.concatenate([clips.states[b, :k], imagined_states]).astype(np.float32)
        offset = b * s.horizon
        if ENV_STATE in self.store.features:
            real_env = real[ENV_STATE][np.minimum(np.arange(k), len(real[ENV_STATE]) - 1)]
            cube, goal = labels["cube"][offset : offset + steps], labels["goal"][offset : offset + steps]
            quat = np.repeat(IDENTITY_QUATERNION[None], steps, axis=0)
            data[ENV_STATE] = np.concatenate([real_env, np.concatenate([cube, quat, goal], axis=1)]).astype(np.float32)
        if "reward" in self.store.features:
            real_reward = real["reward"][np.minimum(np.arange(k), len(real["reward"]) - 1)]
            data["reward"] = np.concatenate([real_reward, success[b, :steps].astype(np.float32)]).astype(np.float32)
        origin = {**s.origin, "seed": s.seed + spec.index, "rollout": spec.index, "start_episode": spec.start_episode,
                  "context_frames": k, "imagined_frames": steps, "spread": round(float(spread[b]), 5)}
        labelled = bool(success[b, :steps].any())
        if sim_success is not None:
            origin["replayed_in_sim"], labelled = sim_success, sim_success
        return {"data": data, "success": labelled, "seed": s.seed + spec.index,
                "origin": json.dumps(origin, sort_keys=True)}
