"""`PolicyRunner`: a policy as an agent that acts one step at a time, for any task env.

Envs hand over one observation per step and take one action; a policy reads a window of the last
`n_obs_steps` observations and returns `n_action_steps` actions. The runner keeps both queues:

- the observation window starts filled with copies of the first observation (as training windows are
  edge-padded at the start of an episode, `WindowDataset`);
- when the action queue is empty it asks the policy for a chunk and executes it open-loop before re-planning
  (receding horizon, Chi et al. 2023 §3.1: re-planning every n_action_steps trades reactivity for temporal
  consistency).

The diffusion noise is drawn from a generator seeded by `reset(seed)`, so an evaluation episode replays
exactly. The agent interface (`reset(seed)`, `act(obs) -> action`) is the one the evaluation harness and the
scripted experts share.
"""

from __future__ import annotations

import os
from collections import deque

import numpy as np
import torch


class PolicyRunner:
    """Wraps a loaded policy into the agent interface; see the module docstring."""

    def __init__(self, policy):
        self.policy = policy
        self.keys = policy.observation_keys
        self._obs: deque[dict[str, np.ndarray]] = deque(maxlen=policy.config.n_obs_steps)
        self._actions: deque[np.ndarray] = deque()
        self.generator = torch.Generator(device=policy.device)

    def reset(self, seed: int | None = None) -> None:
        """Forget the previous episode; `seed` seeds the sampling noise (None: a fresh random seed)."""
        self._obs.clear()
        self._actions.clear()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(seed))

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """The action for this step (float32, in the env's action units)."""
        frame = {key: np.asarray(obs[key]) for key in self.keys if key in obs}
        if not self._obs:
            self._obs.extend([frame] * self._obs.maxlen)
        else:
            self._obs.append(frame)
        if not self._actions:
            window = {key: np.stack([o[key] for o in self._obs]) for key in frame}
            chunk = self.policy.predict_action(window, generator=self.generator)
            self._actions.extend(chunk.float().cpu().numpy())
        return self._actions.popleft().astype(np.float32)


def load_runner(checkpoint: str | os.PathLike, device: str = "cpu", threads: int | None = None,
                num_inference_steps: int | None = None, n_action_steps: int | None = None) -> PolicyRunner:
    """Load a checkpoint as an agent. `threads=1` in evaluation worker processes (one process per core);
    `num_inference_steps` overrides the diffusion policy's DDIM steps, `n_action_steps` how many actions
    are executed before re-planning (neither changes the network)."""
    if threads:
        torch.set_num_threads(threads)
    from robodream.policies.pretrained import load_pretrained

    policy = load_pretrained(checkpoint, device=device)
    if num_inference_steps is not None and policy.config.type == "diffusion":
        policy.config.diffusion.num_inference_steps = int(num_inference_steps)
    if n_action_steps is not None:
        policy.config = override_n_action_steps(policy.config, n_action_steps)
    return PolicyRunner(policy)


def override_n_action_steps(config, n_action_steps: int):
    """The config with another execution horizon, validated (it must fit in the predicted chunk)."""
    from dataclasses import replace

    return replace(config, n_action_steps=int(n_action_steps))  # replace() re-runs __post_init__'s checks
