"""Record one episode from any task env with the gymnasium-style interface of design.md §3.

Works with the PyBullet `TaskEnv`, a world-model env or a real-robot env alike, so it imports no simulator.
The env must provide ``reset(seed) -> (obs, info)``, ``step(action) -> (obs, reward, terminated, truncated,
info)``, ``fps`` and ``features`` (with ``"action"`` names; entries whose name contains "gripper" are
treated as absolute gripper commands, the rest as deltas). If ``info["action"]`` is present after a step,
it is recorded as the action actually applied (e.g. after clipping); otherwise the commanded action is.

Frame layout (T steps give T + 1 frames):

    frame t < T : o_t, a_t (the action applied from o_t), reward r(o_t)
    frame T     : o_T (the final observation), a "hold" action (zero deltas, same gripper), reward r(o_T)

``reward[t]`` is the reward of being in ``o_t``: ``reward[t + 1]`` is what ``step(a_t)`` returned and
``reward[0]`` is 1.0 only if the initial state already counts as a success. So on success the final frame,
where the success is visible, has reward 1.

Success here is the outcome of the *last* step, unlike evaluation (pipeline/policy/harness.py: any step, LeRobot's
rule): a recorded episode's label says what its final frames show, so a demonstration that reached the goal and
then lost it is not stored as a success to learn from or to keep as a synthetic episode. The PyBullet tasks
terminate on success, so for them the two rules agree; they differ only for envs that run on after a success.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class EpisodeRecord:
    """One recorded episode: per-frame arrays stacked along axis 0, plus its outcome and seed."""

    data: dict[str, np.ndarray]
    success: bool
    seed: int

    @property
    def num_frames(self) -> int:
        return len(self.data["timestamp"])


def hold_action(env, action: np.ndarray) -> np.ndarray:
    """``action`` with every delta set to zero and the gripper command kept, using the env's action names."""
    names = (getattr(env, "features", {}).get("action") or {}).get("names") or []
    hold = np.zeros_like(action)
    for i, name in enumerate(names[: len(action)]):
        if "gripper" in name:
            hold[i] = action[i]
    return hold


def record_episode(env, act: Callable[[dict], np.ndarray], seed: int, max_steps: int | None = None,
                   label: Callable[[], np.ndarray] | None = None) -> EpisodeRecord:
    """Run ``act`` in ``env`` from ``env.reset(seed=seed)`` until the episode terminates or is truncated
    (by the env, or after ``max_steps`` steps when given), and return every frame (see module docstring).

    ``label``, called right after each ``act``, gives the action to record instead of the applied one
    (DART-style demonstrations: execute a perturbed action, record what the expert meant)."""
    obs, info = env.reset(seed=seed)
    frames: list[dict[str, np.ndarray]] = []
    actions: list[np.ndarray] = []
    rewards: list[float] = [1.0 if info.get("success", False) else 0.0]
    success = bool(info.get("success", False))
    done = False
    steps = 0
    while not done:
        commanded = np.asarray(act(obs), dtype=np.float32)
        recorded = None if label is None else np.asarray(label(), dtype=np.float32)
        next_obs, reward, terminated, truncated, info = env.step(commanded)
        applied = recorded if recorded is not None else np.asarray(info.get("action", commanded), dtype=np.float32)
        frames.append(obs)
        actions.append(applied)
        rewards.append(float(reward))
        success = bool(info.get("success", reward > 0 if terminated else False))
        steps += 1
        obs = next_obs
        done = terminated or truncated or (max_steps is not None and steps >= max_steps)
    frames.append(obs)
    actions.append(hold_action(env, actions[-1]))

    data = {key: np.stack([f[key] for f in frames]) for key in frames[0]}
    data["action"] = np.stack(actions).astype(np.float32)
    data["reward"] = np.asarray(rewards, dtype=np.float32)
    data["timestamp"] = (np.arange(len(frames), dtype=np.float64) / env.fps).astype(np.float32)
    return EpisodeRecord(data=data, success=success, seed=int(seed))
