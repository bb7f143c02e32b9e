"""Open-loop imagination of recorded episodes: start from an episode's first K frames and replay its actions.

Shared by the validation strip written during training, `robodream dream` (real vs imagined videos) and
`robodream eval-wm` (fidelity per horizon step).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robodream.datasets.reader import EpisodeStore
from robodream.errors import RobodreamError
from robodream.features import ACTION, STATE
from robodream.world_models.env import WorldModelEnv
from robodream.world_models.model import WorldModel


@dataclass
class EpisodeClips:
    """Real context + continuation of several episodes, aligned for open-loop replay.

    frames: (B, K + H, height, width, 3) real frames; actions: (B, K + H, A) the action taken at each frame;
    states: (B, K + H, S) or None; valid: (B, H) whether continuation step h exists in the recording (frames
    past an episode's end repeat its last frame, with "hold" actions).
    """

    frames: np.ndarray
    actions: np.ndarray
    states: np.ndarray | None
    valid: np.ndarray
    episodes: list[int]


def load_clips(store: EpisodeStore, episodes: list[int], context_frames: int, horizon: int,
               image_key: str, with_states: bool) -> EpisodeClips:
    """The first K + horizon frames of each episode (edge-padded past its end, flagged in `valid`)."""
    if not episodes:
        raise RobodreamError("no episodes selected")
    frames, actions, states, valid = [], [], [], []
    for index in episodes:
        keys = [image_key, ACTION] + ([STATE] if with_states else [])
        episode = store.episode(index, keys)
        length = len(episode[ACTION])
        if length < context_frames:
            raise RobodreamError(f"episode {index} has {length} frames, fewer than the model's {context_frames} "
                                 "context frames")
        # Past the end, repeat the final frame and its action (recordings end with a "hold" action).
        take = np.minimum(np.arange(context_frames + horizon), length - 1)
        frames.append(episode[image_key][take])
        actions.append(episode[ACTION][take])
        if with_states:
            states.append(episode[STATE][take])
        valid.append(np.arange(context_frames, context_frames + horizon) < length)
    return EpisodeClips(np.stack(frames), np.stack(actions).astype(np.float32),
                        np.stack(states).astype(np.float32) if with_states else None, np.stack(valid), list(episodes))


def imagine(model: WorldModel, clips: EpisodeClips, horizon: int, seed: int = 0,
            actions: np.ndarray | None = None, num_sampling_steps: int | None = None) -> np.ndarray:
    """Imagined continuation (B, horizon, H, W, 3) of `clips` under their recorded actions, or under
    `actions` (B, K + horizon, A) instead (e.g. shuffled across episodes)."""
    k = model.config.context_frames
    actions = clips.actions if actions is None else actions
    env = WorldModelEnv(model, num_envs=len(clips.episodes), max_steps=horizon, seed=seed,
                        num_sampling_steps=num_sampling_steps)
    # The actions that led to context frames 0..K-1 are a_-1..a_K-2; a_-1 is edge-padded with a_0, exactly as
    # in the training windows. Frame K + h is then produced by a_(K-1+h).
    history = actions[:, np.clip(np.arange(-1, k - 1), 0, None)]
    env.reset_from(clips.frames[:, :k], history, None if clips.states is None else clips.states[:, :k])
    imagined = []
    for step in range(horizon):
        obs, *_ = env.step(actions[:, k - 1 + step])
        imagined.append(obs[model.config.image_key])
    return np.stack(imagined, axis=1)


def side_by_side(real: np.ndarray, imagined: np.ndarray, gap: int = 2) -> np.ndarray:
    """(B, T, H, W, 3) real and imagined -> (T, H, W*2+gap, 3) per episode pair, stacked: (B, T, H, 2W+gap, 3)."""
    white = np.full((*real.shape[:3], gap, 3), 255, np.uint8)
    return np.concatenate([real, white, imagined], axis=3)


def rollout_strip(real: np.ndarray, imagined: np.ndarray, every: int = 1, gap: int = 2) -> np.ndarray:
    """A still image: for each episode a row of real frames above a row of imagined ones, time left to right."""
    real, imagined = real[:, ::every], imagined[:, ::every]
    batch, steps, height, width, _ = real.shape
    canvas = np.full((batch * (2 * height + 2 * gap), steps * (width + gap), 3), 255, np.uint8)
    for b in range(batch):
        for t in range(steps):
            x = t * (width + gap)
            y = b * (2 * height + 2 * gap)
            canvas[y : y + height, x : x + width] = real[b, t]
            canvas[y + height + gap // 2 : y + 2 * height + gap // 2, x : x + width] = imagined[b, t]
    return canvas
