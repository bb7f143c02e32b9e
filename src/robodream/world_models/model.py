"""`WorldModel`: EDM diffusion over the next frame given K context frames and actions, plus the next state.

Training (Karras et al. 2022, "EDM"): ln(sigma) ~ N(p_mean, p_std^2); the denoiser sees c_in * (y + sigma n)
and is trained so that D = c_skip x + c_out F matches the clean frame y, with EDM's loss weight
1 / c_out^2 (equivalently: F regresses (y - c_skip x) / c_out with unit weight). The preconditioning comes
from diffusers' `EDMEulerScheduler`, which also runs sampling, so training and sampling cannot disagree.
Context frames get noise of a random level in [0, max_context_noise], and the level is an input.

Sampling: `num_sampling_steps` Euler steps on the Karras schedule from sigma_max to 0 (DIAMOND: 3 steps);
generated frames are rounded to 8 bits before being fed back as context, exactly as a recorded frame would
be (DIAMOND does the same).

Saved as a directory: config.json (the config, plus the normaliser's layout and the robodream version) +
model.safetensors (normaliser buffers included), by `robodream.pretrained.PretrainedMixin`; loads without
Lightning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import EDMEulerScheduler
from torch import nn

from robodream import __version__
from robodream.datasets.normalize import Normalizer
from robodream.errors import RobodreamError
from robodream.features import ACTION, STATE
from robodream.pretrained import CONFIG_FILE, PretrainedMixin
from robodream.world_models.configuration import WorldModelConfig
from robodream.world_models.modeling import ActionConditionedDenoiser, StatePredictor


def frames_to_model(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-1, 1]."""
    return frames.permute(*range(frames.ndim - 3), -1, -3, -2).float().div(127.5).sub(1.0)


def model_to_frames(values: torch.Tensor) -> torch.Tensor:
    """float (..., 3, H, W) in [-1, 1] -> uint8 (..., H, W, 3), rounded like a camera would."""
    pixels = values.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return pixels.permute(*range(values.ndim - 3), -2, -1, -3)


class WorldModel(nn.Module, PretrainedMixin):
    """Denoiser + optional state predictor + the normaliser of actions and states."""

    model_kind = "world model"

    def __init__(self, config: WorldModelConfig, normalizer: Normalizer | None = None):
        super().__init__()
        if not config.is_complete:
            raise RobodreamError("the world-model config does not know its data shapes yet: build it with "
                                 "config.with_data_shapes(store.features)")
        self.config = config
        self.denoiser = ActionConditionedDenoiser(config)
        self.state_predictor = StatePredictor(config) if config.predict_state else None
        if normalizer is None:  # loading: buffers are filled from the checkpoint
            sizes = {ACTION: config.action_dim, **({STATE: config.state_dim} if config.state_dim else {})}
            normalizer = Normalizer(self._normalization_modes(config), sizes=sizes)
        self.normalizer = normalizer
        self.scheduler = EDMEulerScheduler(
            sigma_min=config.sigma_min, sigma_max=config.sigma_max, sigma_data=config.sigma_data, rho=config.rho,
            prediction_type="epsilon", sigma_schedule="karras", final_sigmas_type="zero",
        )

    @staticmethod
    def _normalization_modes(config: WorldModelConfig) -> dict[str, str]:
        modes = {ACTION: config.action_normalization}
        if config.state_dim:
            modes[STATE] = config.state_normalization
        return modes

    @classmethod
    def from_stats(cls, config: WorldModelConfig, stats: dict[str, Any]) -> WorldModel:
        """A fresh model whose normaliser is fitted to a store's stats (store.stats()["features"])."""
        return cls(config, Normalizer(cls._normalization_modes(config), stats))

    # -- training -------------------------------------------------------------------------------------------
    def _normalized(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        actions = self.normalizer.normalize(ACTION, batch[ACTION].float())
        states = self.normalizer.normalize(STATE, batch[STATE].float()) if self.state_predictor is not None else None
        return actions, states

    def training_loss(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None
                      ) -> dict[str, torch.Tensor]:
        """Losses on a batch of windows: images (B, K+1, H, W, 3) uint8 (context + next frame), actions
        (B, K+1, A), states (B, K+1, S); windows whose next frame is edge padding are masked out."""
        cfg = self.config
        key = cfg.image_key
        frames = frames_to_model(batch[key])
        context, target = frames[:, : cfg.context_frames], frames[:, cfg.context_frames]
        batch_size = target.shape[0]
        device = target.device
        valid = (~batch[f"{key}_is_pad"][:, cfg.context_frames]).float()
        weight = valid / valid.sum().clamp(min=1.0)

        def randn(*shape):
            return torch.randn(*shape, generator=generator, device=device)

        context_noise = torch.rand(batch_size, generator=generator, device=device) * cfg.max_context_noise
        context = context + context_noise[:, None, None, None, None] * randn(*context.shape)
        sigma = (randn(batch_size) * cfg.p_std + cfg.p_mean).exp()
        sigma_b = sigma[:, None, None, None]
        noisy = target + sigma_b * randn(*target.shape)
        actions, states = self._normalized(batch)
        output = self.denoiser(self.scheduler.precondition_inputs(noisy, sigma_b),
                               self.scheduler.precondition_noise(sigma), context, actions, context_noise)
        denoised = self.scheduler.precondition_outputs(noisy, output, sigma_b)
        c_out = sigma_b * cfg.sigma_data / (sigma_b**2 + cfg.sigma_data**2).sqrt()
        image_loss = (((denoised - target) / c_out) ** 2).mean(dim=(1, 2, 3))
        losses = {"image_loss": (image_loss * weight).sum()}
        if self.state_predictor is not None:
            predicted = self.state_predictor(target, states[:, : cfg.context_frames], actions)
            state_loss = ((predicted - states[:, cfg.context_frames]) ** 2).mean(dim=1)
            losses["state_loss"] = (state_loss * weight).sum()
        losses["loss"] = losses["image_loss"] + cfg.state_loss_weight * losses.get("state_loss", 0.0)
        return losses

    # -- sampling -------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def sample_next(self, context_frames: torch.Tensor, actions: torch.Tensor,
                    context_states: torch.Tensor | None = None, generator: torch.Generator | None = None,
                    num_steps: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Sample the next frame (and state) for a batch.

        context_frames (B, K, H, W, 3) uint8; actions (B, K+1, A) in the data's units (the action that
        leads from the last context frame to the next is the last one); context_states (B, K, S) in the
        data's units, needed when the model predicts states. Returns (B, H, W, 3) uint8 and (B, S) or None.
        """
        cfg = self.config
        self.check_inputs(context_frames, actions, context_states)
        device = next(self.parameters()).device
        context = frames_to_model(context_frames.to(device))
        batch_size = context.shape[0]
        norm_actions = self.normalizer.normalize(ACTION, actions.to(device).float())
        scheduler = self.scheduler
        scheduler.set_timesteps(num_steps or cfg.num_sampling_steps, device=device)
        x = torch.randn(batch_size, 3, cfg.image_size, cfg.image_size, generator=generator, device=device)
        x = x * scheduler.sigmas[0].to(device)
        no_context_noise = torch.zeros(batch_size, device=device)
        for c_noise in scheduler.timesteps:
            model_input = scheduler.scale_model_input(x, c_noise)
            output = self.denoiser(model_input, c_noise.expand(batch_size), context, norm_actions, no_context_noise)
            x = scheduler.step(output, c_noise, x).prev_sample
        frames = model_to_frames(x)
        states = None
        if self.state_predictor is not None:
            norm_states = self.normalizer.normalize(STATE, context_states.to(device).float())
            # the predictor reads the frame as it will be stored and fed back: 8-bit rounded
            predicted = self.state_predictor(frames_to_model(frames), norm_states, norm_actions)
            states = self.normalizer.unnormalize(STATE, predicted)
        return frames, states

    def check_inputs(self, context_frames: torch.Tensor, actions: torch.Tensor,
                     context_states: torch.Tensor | None) -> None:
        """Clear errors for inputs that do not fit this model."""
        cfg = self.config
        expected = (cfg.context_frames, cfg.image_size, cfg.image_size, 3)
        if context_frames.ndim != 5 or tuple(context_frames.shape[1:]) != expected:
            if context_frames.ndim == 5 and context_frames.shape[1] < cfg.context_frames:
                raise RobodreamError(f"got {context_frames.shape[1]} context frames; this model needs "
                                     f"{cfg.context_frames} (pad the start of an episode by repeating its first frame)")
            raise RobodreamError(f"context frames have shape {tuple(context_frames.shape[1:])}; this model needs "
                                 f"(K, H, W, 3) = {expected}")
        if context_frames.dtype != torch.uint8:
            raise RobodreamError(f"context frames must be uint8 images, got {context_frames.dtype}")
        if tuple(actions.shape[1:]) != (cfg.context_frames + 1, cfg.action_dim):
            raise RobodreamError(f"actions have shape {tuple(actions.shape[1:])}; this model needs (K+1, A) = "
                                 f"{(cfg.context_frames + 1, cfg.action_dim)}")
        if self.state_predictor is not None and (
            context_states is None or tuple(context_states.shape[1:]) != (cfg.context_frames, cfg.state_dim)
        ):
            got = None if context_states is None else tuple(context_states.shape[1:])
            raise RobodreamError(f"this model predicts states and needs context states of shape "
                                 f"{(cfg.context_frames, cfg.state_dim)}, got {got}")

    # -- saving (robodream.pretrained: save_pretrained / from_pretrained) -------------------------------------
    def pretrained_config(self) -> dict[str, Any]:
        return {**self.config.to_dict(), "normalizer": self.normalizer.config(), "robodream_version": __version__}

    @classmethod
    def _from_pretrained_config(cls, config: dict[str, Any], directory: Path) -> WorldModel:
        meta = {k: v for k, v in config.items() if k not in ("normalizer", "robodream_version")}
        return cls(WorldModelConfig.from_dict(meta, source=str(directory / CONFIG_FILE)))


def set_seed_generator(seed: int | None, device: str | torch.device = "cpu") -> torch.Generator | None:
    """A torch Generator seeded with `seed` (None: no generator, global RNG)."""
    if seed is None:
        return None
    return torch.Generator(device=device).manual_seed(int(seed))


def as_tensor(values: np.ndarray | torch.Tensor) -> torch.Tensor:
    return values if isinstance(values, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(values))
