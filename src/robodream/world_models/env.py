"""`WorldModelEnv`: the world model as an environment (DIAMOND's WorldModelEnv, batched).

It has the task-env interface of design.md §3 — reset / step(action) -> obs, reward, terminated, truncated,
info with info["success"] — over `num_envs` imagined rollouts at once:

- `reset_from(frames, actions, states)` starts every rollout from real context (K frames each, plus the
  actions taken at them and their states);
- `reset(seed)` starts from `initial_observation(seed)` (e.g. the PyBullet env's first observation for that
  seed), with the first frame repeated K times — the same edge padding the model saw at episode starts in
  training — and "hold" actions;
- `step(actions)` samples the next frame (and state) of every rollout and slides the context window.

Observations are numpy arrays keyed like the data (``observation.images.<camera>``, ``observation.state``),
batched with a leading num_envs axis; with num_envs == 1, `reset(seed)` / `step(action)` with an unbatched
action return unbatched observations, so the env drops into loops written for a single PyBullet env.
Success and reward come from `success_fn(obs) -> (num_envs,) bool` when given (a probe trained on real
frames, later); without it they are always False / 0.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from robodream.errors import RobodreamError
from robodream.features import STATE
from robodream.world_models.model import WorldModel, as_tensor, set_seed_generator


class WorldModelEnv:
    """Batched imagined rollouts; see the module docstring."""

    def __init__(self, model: WorldModel, num_envs: int = 1, max_steps: int = 100, fps: float = 10.0,
                 seed: int | None = None, num_sampling_steps: int | None = None,
                 initial_observation: Callable[[int], dict[str, np.ndarray]] | None = None,
                 success_fn: Callable[[dict[str, np.ndarray]], np.ndarray] | None = None):
        if num_envs < 1:
            raise RobodreamError(f"num_envs must be >= 1, got {num_envs}")
        self.model = model.eval()
        self.config = model.config
        self.num_envs = num_envs
        self.max_steps = max_steps
        self.fps = fps
        self.num_sampling_steps = num_sampling_steps
        self.initial_observation = initial_observation
        self.success_fn = success_fn
        self.device = next(model.parameters()).device
        self.generator = set_seed_generator(seed, self.device)
        self.image_key = self.config.image_key
        self.uses_state = self.config.predict_state
        self.features = {
            self.image_key: {"dtype": "uint8", "shape": [self.config.image_size] * 2 + [3],
                             "names": ["height", "width", "channel"]},
            "action": {"dtype": "float32", "shape": [self.config.action_dim], "names": None},
        }
        if self.uses_state:
            self.features[STATE] = {"dtype": "float32", "shape": [self.config.state_dim], "names": None}
        self._frames: torch.Tensor | None = None  # (B, K, H, W, 3) uint8
        self._actions: torch.Tensor | None = None  # (B, K, A): actions taken at the context frames
        self._states: torch.Tensor | None = None  # (B, K, S)
        self._steps = 0
        self._unbatched = False

    # -- starting rollouts ----------------------------------------------------------------------------------
    def reset_from(self, frames: np.ndarray | torch.Tensor, actions: np.ndarray | torch.Tensor | None = None,
                   states: np.ndarray | torch.Tensor | None = None) -> dict[str, np.ndarray]:
        """Start every rollout from real context: frames (B, K, H, W, 3) uint8; the actions that led to those
        frames (B, K, A): actions[:, i] was taken at the frame before frames[:, i] (at an episode start, repeat
        the first action, as training windows do; default: zeros, "hold"); and their states (B, K, S;
        required when the model predicts states). The next `step(a)` then applies a at the last context
        frame. Returns the batched observation of the last context frame."""
        cfg = self.config
        frames = as_tensor(frames)
        if frames.ndim != 5 or frames.shape[0] != self.num_envs:
            raise RobodreamError(f"reset_from needs frames of shape (num_envs={self.num_envs}, K, H, W, 3), got "
                                 f"{tuple(frames.shape)}")
        if frames.shape[1] != cfg.context_frames:
            raise RobodreamError(f"got {frames.shape[1]} context frames; this model needs {cfg.context_frames}")
        if actions is None:
            actions = torch.zeros(self.num_envs, cfg.context_frames, cfg.action_dim)
        actions = as_tensor(actions)
        if self.uses_state and states is None:
            raise RobodreamError("this world model predicts states: pass the context states to reset_from")
        self.model.check_inputs(frames, torch.cat([actions, actions[:, -1:]], dim=1).float(),
                                None if states is None else as_tensor(states))
        self._frames = frames.to(self.device)
        self._actions = actions.float().to(self.device)
        self._states = as_tensor(states).float().to(self.device) if self.uses_state else None
        self._steps = 0
        self._unbatched = False
        return self._observation()

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict[str, np.ndarray], dict]:
        """Start from `initial_observation(seed)` (every rollout from the same start), padded to K frames."""
        if self.initial_observation is None:
            raise RobodreamError("this WorldModelEnv has no initial_observation function: use reset_from(...) with "
                                 "real context frames, or pass initial_observation=... (e.g. a sim env's reset)")
        if seed is not None:
            self.generator = set_seed_generator(seed, self.device)
        first = self.initial_observation(0 if seed is None else int(seed))
        k = self.config.context_frames
        frames = np.repeat(np.asarray(first[self.image_key])[None, None], k, axis=1)
        states = np.repeat(np.asarray(first[STATE], np.float32)[None, None], k, axis=1) if self.uses_state else None
        frames = np.repeat(frames, self.num_envs, axis=0)
        states = None if states is None else np.repeat(states, self.num_envs, axis=0)
        obs = self.reset_from(frames, None, states)
        self._unbatched = self.num_envs == 1
        return self._maybe_unbatch(obs), {"success": self._maybe_unbatch(self._success(obs)), "seed": seed}

    # -- stepping ---------------------------------------------------------------------------------------------
    def step(self, action: np.ndarray | torch.Tensor):
        """Imagine one control step for every rollout. action: (num_envs, A), or (A,) when num_envs == 1."""
        if self._frames is None:
            raise RobodreamError("step() called before reset(): call reset(seed) or reset_from(...) first")
        action = as_tensor(action).float()
        if action.ndim == 1:
            action = action[None]
        if tuple(action.shape) != (self.num_envs, self.config.action_dim):
            raise RobodreamError(f"action has shape {tuple(action.shape)}; expected ({self.num_envs}, "
                                 f"{self.config.action_dim})")
        if not torch.isfinite(action).all():
            raise RobodreamError("action contains NaN or inf")
        action = action.to(self.device)
        window = torch.cat([self._actions, action[:, None]], dim=1)
        frame, state = self.model.sample_next(self._frames, window, self._states, generator=self.generator,
                                              num_steps=self.num_sampling_steps)
        self._frames = torch.cat([self._frames[:, 1:], frame[:, None]], dim=1)
        self._actions = window[:, 1:]
        if self.uses_state:
            self._states = torch.cat([self._states[:, 1:], state[:, None]], dim=1)
        self._steps += 1
        obs = self._observation()
        success = self._success(obs)
        truncated = np.full(self.num_envs, self._steps >= self.max_steps)
        info = {"success": self._maybe_unbatch(success), "action": self._maybe_unbatch(action.cpu().numpy())}
        return (self._maybe_unbatch(obs), self._maybe_unbatch(success.astype(np.float32)),
                self._maybe_unbatch(success.copy()), self._maybe_unbatch(truncated), info)

    def close(self) -> None:
        self._frames = self._actions = self._states = None

    # -- helpers ----------------------------------------------------------------------------------------------
    def _observation(self) -> dict[str, np.ndarray]:
        obs = {self.image_key: self._frames[:, -1].cpu().numpy()}
        if self.uses_state:
            obs[STATE] = self._states[:, -1].cpu().numpy()
        return obs

    def _success(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        if self.success_fn is None:
            return np.zeros(self.num_envs, dtype=bool)
        return np.asarray(self.success_fn(obs), dtype=bool).reshape(self.num_envs)

    def _maybe_unbatch(self, value):
        if not self._unbatched:
            return value
        if isinstance(value, dict):
            return {k: v[0] for k, v in value.items()}
        return value[0]
