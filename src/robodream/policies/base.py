"""What every policy shares: its features, the normaliser, the observation encoder and `predict_action`.

A policy is built from (config, features, stats): `features` are the store/env features it reads and
writes (LeRobot-style {key: {dtype, shape, names}}: the cameras, observation.state, action), and `stats` the
normalisation statistics of its training data. The normaliser's maps are buffers, so they are saved in the
checkpoint with the weights; a loaded policy needs no statistics.

Batches (training) and observation windows (acting) are dicts of tensors shaped like `WindowDataset` items:
images (B, T, H, W, 3) uint8, states (B, T, S), actions (B, Tp, A), in data units. Converting and normalising
happens here, on the policy's device.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from robodream.datasets.normalize import Normalizer
from robodream.errors import RobodreamError
from robodream.features import ACTION, IMAGE_PREFIX, STATE, Feature
from robodream.policies.configuration import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    PolicyConfig,
    check_checkpoint_info,
)
from robodream.policies.encoder import ObservationEncoder
from robodream.pretrained import PretrainedMixin


def select_features(config: PolicyConfig, available: Mapping[str, Feature], where: str) -> dict[str, Feature]:
    """The features a policy with `config` reads and writes, taken from `available` (a store's or env's).

    Raises a one-line error naming what is missing. environment_state is never selected (privileged).
    """
    cameras = sorted(k for k in available if k.startswith(IMAGE_PREFIX))
    wanted = list(config.image_keys) if config.image_keys is not None else cameras
    if config.image_keys is None and not cameras and not config.use_state:
        raise RobodreamError(f"{where} has no camera (observation.images.*) and use_state=false: the policy "
                             "would see nothing")
    if config.use_state:
        wanted.append(STATE)
    wanted.append(ACTION)
    missing = [k for k in wanted if k not in available]
    if missing:
        raise RobodreamError(f"{where} lacks {missing} which the policy needs (policy.image_keys / use_state); "
                             f"it holds {sorted(available)}")
    selected = {k: dict(available[k]) for k in wanted}
    for key in wanted:
        shape = selected[key]["shape"]
        if key.startswith(IMAGE_PREFIX) and (len(shape) != 3 or shape[-1] != 3):
            raise RobodreamError(f"{where}: {key} has shape {shape}, expected (height, width, 3) images")
        if not key.startswith(IMAGE_PREFIX) and len(shape) != 1:
            raise RobodreamError(f"{where}: {key} has shape {shape}, expected a vector")
    return selected


class Policy(nn.Module, PretrainedMixin):
    """Base class: subclasses set `policy_type` and implement `compute_loss` and `sample_actions`.

    Saved as a checkpoint directory by `save_pretrained(directory, training={step, task, fps, data})`; loaded
    by `<PolicyClass>.from_pretrained(path)`, or `policies.pretrained.load_pretrained(path)` for whichever
    type the checkpoint holds."""

    model_kind = "policy"
    #: the `type` key of PolicyConfig this class implements
    policy_type: ClassVar[str | None] = None

    def __init__(self, config: PolicyConfig, features: Mapping[str, Feature],
                 stats: Mapping[str, Any] | None = None):
        """`stats`: store.stats()["features"] of the training data; None when loading a checkpoint. `config` must
        have its time layout fixed (`config.for_task(task)`)."""
        super().__init__()
        if not config.resolved:
            raise RobodreamError(f"the policy's horizon={config.horizon} / n_action_steps={config.n_action_steps} "
                                 "are not fixed: build it from config.for_task(<the data's task>)")
        self.config = config
        self.features = {k: dict(v) for k, v in features.items()}
        self.image_keys = sorted(k for k in features if k.startswith(IMAGE_PREFIX))
        self.state_key = STATE if STATE in features else None
        self.action_dim = int(features[ACTION]["shape"][0])
        norm = config.normalization
        modes = {k: norm.get("images", "mean_std") for k in self.image_keys}
        sizes = {k: 3 for k in self.image_keys}
        if self.state_key:
            modes[STATE] = norm.get(STATE, "min_max")
            sizes[STATE] = int(features[STATE]["shape"][0])
        modes[ACTION] = norm.get(ACTION, "min_max")
        sizes[ACTION] = self.action_dim
        self.normalizer = Normalizer(modes, stats=stats) if stats is not None else Normalizer(modes, sizes=sizes)
        self.obs_encoder = ObservationEncoder(config.encoder, {k: features[k]["shape"] for k in self.image_keys},
                                              sizes.get(STATE, 0) if self.state_key else 0)
        self.cond_dim = self.obs_encoder.step_dim * config.n_obs_steps
        #: the "training" record of the checkpoint this policy was loaded from (step, task, fps, data)
        self.training_info: dict[str, Any] = {}

    # -- saving (robodream.pretrained: save_pretrained / from_pretrained) -----------------------------------
    def pretrained_config(self, training: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """config.json: the config, the features read and written, the normaliser's layout and `training`."""
        return {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "type": self.config.type,
            "policy": self.config.to_dict(), "features": self.features, "normalizer": self.normalizer.config(),
            "num_parameters": sum(p.numel() for p in self.parameters()), "training": dict(training or {}),
        }

    @classmethod
    def _from_pretrained_config(cls, config: dict[str, Any], directory: Path) -> Policy:
        info = check_checkpoint_info(config, directory)
        if cls.policy_type != info["type"]:
            raise RobodreamError(f"{directory} holds a {info['type']} policy, not a {cls.policy_type or 'concrete'} "
                                 "one: load it with robodream.policies.pretrained.load_pretrained")
        policy = cls(PolicyConfig.from_dict(info["policy"]), info["features"])
        policy.training_info = info.get("training", {})
        return policy

    # -- data layout ------------------------------------------------------------------------------------
    @property
    def observation_keys(self) -> list[str]:
        return self.image_keys + ([self.state_key] if self.state_key else [])

    def delta_indices(self) -> dict[str, list[int]]:
        """Frame offsets per key for `WindowDataset`: the observation window and the action chunk."""
        offsets = {key: self.config.observation_offsets() for key in self.observation_keys}
        offsets[ACTION] = self.config.action_offsets()
        return offsets

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def encode_observations(self, batch: Mapping[str, torch.Tensor], augment: bool = False) -> torch.Tensor:
        """(B, To, ...) raw observations -> (B, cond_dim) conditioning features."""
        images = {}
        for key in self.image_keys:
            x = batch[key].to(self.device, non_blocking=True).float() / 255.0  # (B, T, H, W, 3)
            images[key] = self.normalizer.normalize(key, x).permute(0, 1, 4, 2, 3)  # per-channel, then CHW
        state = None
        if self.state_key:
            state = self.normalizer.normalize(STATE, batch[STATE].to(self.device).float())
        return self.obs_encoder(images, state, augment)

    def normalized_actions(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.normalizer.normalize(ACTION, batch[ACTION].to(self.device).float())

    # -- subclass API -------------------------------------------------------------------------------------
    def compute_loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Training loss on a batch of windows (see `delta_indices`)."""
        raise NotImplementedError

    def sample_actions(self, cond: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, cond_dim) -> (B, horizon, A) normalised actions."""
        raise NotImplementedError

    # -- acting -------------------------------------------------------------------------------------------
    def _window(self, obs_window: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], bool]:
        """Check and batch an observation window; returns tensors and whether a batch dim was added."""
        window, unbatched = {}, None
        for key in self.observation_keys:
            if key not in obs_window:
                raise RobodreamError(f"the observation window lacks {key!r}, which the policy needs "
                                     f"(it has {sorted(obs_window)})")
            value = torch.as_tensor(np.asarray(obs_window[key]) if not torch.is_tensor(obs_window[key])
                                    else obs_window[key])
            frame_shape = tuple(self.features[key]["shape"])
            if tuple(value.shape[-len(frame_shape):]) != frame_shape or value.ndim not in (len(frame_shape) + 1,
                                                                                           len(frame_shape) + 2):
                raise RobodreamError(f"{key} has shape {tuple(value.shape)}; the policy expects (batch, "
                                     f"{self.config.n_obs_steps}, {', '.join(map(str, frame_shape))}) or no batch dim")
            is_unbatched = value.ndim == len(frame_shape) + 1
            if unbatched is not None and is_unbatched != unbatched:
                raise RobodreamError("mixed batched and unbatched observations in one window")
            unbatched = is_unbatched
            value = value[None] if is_unbatched else value
            if value.shape[1] != self.config.n_obs_steps:
                raise RobodreamError(f"{key} holds {value.shape[1]} time steps; the policy's window is "
                                     f"n_obs_steps={self.config.n_obs_steps}")
            window[key] = value
        return window, bool(unbatched)

    @torch.no_grad()
    def predict_action_chunk(self, obs_window: Mapping[str, Any],
                             generator: torch.Generator | None = None) -> torch.Tensor:
        """The whole predicted chunk, (B, horizon, A) in action units (the first n_obs_steps - 1 actions are
        the ones the policy thinks led to the current observation)."""
        window, unbatched = self._window(obs_window)
        actions = self.normalizer.unnormalize(ACTION, self.sample_actions(self.encode_observations(window),
                                                                         generator))
        return actions[0] if unbatched else actions

    @torch.no_grad()
    def predict_action(self, obs_window: Mapping[str, Any], generator: torch.Generator | None = None) -> torch.Tensor:
        """Observation window -> the `n_action_steps` actions to execute from the current step on.

        obs_window: key -> (B, n_obs_steps, *shape) or (n_obs_steps, *shape), oldest first, images uint8
        (H, W, 3) as the env and the store give them, numpy or torch. Returns (B, n_action_steps, A) (or
        (n_action_steps, A)) float32 in action units. `generator` seeds the diffusion noise.
        """
        chunk = self.predict_action_chunk(obs_window, generator)
        start = self.config.first_executed
        return chunk[..., start : start + self.config.n_action_steps, :]
