"""`WorldModelConfig`: everything that defines a world model's architecture and diffusion process.

The config is the model's constructor signature (diffusers style): it is saved as config.json next to the
weights, and a checkpoint loads only into a model built from the same config. Training settings (data,
steps, learning rate) live elsewhere (`TrainWorldModelConfig` in the pipeline).

Defaults follow DIAMOND (Alonso et al. 2024) and EDM (Karras et al. 2022), scaled for a CPU:
4 context frames stacked as channels, EDM preconditioning with sigma_data 0.5, a lognormal training noise
distribution, 3 Euler steps from sigma_max 5 to sigma_min 2e-3 with rho 7 at sampling time, and context
frames noise-augmented during training with their noise level given to the network (GameNGen found this
critical for long rollouts; Ctrl-World uses history noise up to ~0.3).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from robodream.errors import RobodreamError

MODEL_TYPE = "robodream.world_model.edm_unet"
CONFIG_VERSION = 1


@dataclass
class UNetConfig:
    """The diffusers UNet2DModel backbone. CPU cost is dominated by the full-resolution level, so the
    default keeps it thin (16 channels) and doubles channels as resolution halves."""

    block_out_channels: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    layers_per_block: int = 2
    norm_num_groups: int = 8
    #: width of the conditioning vector (noise level + actions + context noise) fed to every res block
    embedding_dim: int = 128
    #: self-attention in the bottleneck (lowest resolution only; cheap there)
    mid_attention: bool = True
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if not self.block_out_channels or any(c <= 0 for c in self.block_out_channels):
            raise RobodreamError(f"unet.block_out_channels must be positive, got {self.block_out_channels}")
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            raise RobodreamError(
                f"every unet.block_out_channels entry must be divisible by unet.norm_num_groups="
                f"{self.norm_num_groups}, got {self.block_out_channels}"
            )


@dataclass
class WorldModelConfig:
    """Architecture, data interface and diffusion settings of an action-conditioned world model."""

    #: data interface; None = taken from the training store (`with_data_shapes`), and a model refuses a
    #: store whose shapes differ from its own
    image_size: int | None = None
    #: size of the action vector (4 for the sim Panda: ee dx, dy, dz, gripper)
    action_dim: int | None = None
    #: size of observation.state (11 for the sim Panda); 0 = no state input/prediction
    state_dim: int | None = None
    camera: str | None = None
    #: K: context frames stacked as input channels (the last K observations)
    context_frames: int = 4
    #: predict observation.state of the next frame alongside the image (needs state_dim > 0)
    predict_state: bool = True
    unet: UNetConfig = field(default_factory=UNetConfig)
    # -- EDM (Karras et al. 2022, Table 1) ---------------------------------------------------------------
    sigma_data: float = 0.5
    #: training noise levels: ln(sigma) ~ N(p_mean, p_std^2); DIAMOND uses -0.4, 1.2
    p_mean: float = -0.4
    p_std: float = 1.2
    #: sampling schedule (DIAMOND Atari: 3 Euler steps, sigma 5 -> 2e-3, rho 7)
    sigma_min: float = 2e-3
    sigma_max: float = 5.0
    rho: float = 7.0
    num_sampling_steps: int = 3
    #: context frames get Gaussian noise with sigma ~ U(0, max_context_noise) during training
    max_context_noise: float = 0.3
    # -- normalisation of actions and states (modes of datasets.normalize.Normalizer) --------------------
    action_normalization: str = "min_max"
    state_normalization: str = "mean_std"
    #: weight of the state-prediction loss next to the image loss
    state_loss_weight: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.unet, dict):
            self.unet = UNetConfig(**self.unet)
        if self.context_frames < 1:
            raise RobodreamError(f"context_frames must be >= 1, got {self.context_frames}")
        if self.num_sampling_steps < 1:
            raise RobodreamError(f"num_sampling_steps must be >= 1, got {self.num_sampling_steps}")
        if not 0 < self.sigma_min < self.sigma_max:
            raise RobodreamError(f"need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")
        if self.max_context_noise < 0:
            raise RobodreamError(f"max_context_noise must be >= 0, got {self.max_context_noise}")
        if self.is_complete:
            self._check_data_shapes()

    @property
    def is_complete(self) -> bool:
        """Whether the data interface is known (the model can be built)."""
        return None not in (self.image_size, self.action_dim, self.state_dim, self.camera)

    def _check_data_shapes(self) -> None:
        levels = len(self.unet.block_out_channels)
        if self.image_size < 8 or self.image_size % (2 ** (levels - 1)):
            raise RobodreamError(
                f"image_size={self.image_size} must be divisible by 2^(levels-1)={2 ** (levels - 1)} "
                f"for a UNet with {levels} levels; change image_size or unet.block_out_channels"
            )
        if self.action_dim < 1:
            raise RobodreamError(f"action_dim must be >= 1, got {self.action_dim}")
        if self.predict_state and self.state_dim < 1:
            raise RobodreamError("predict_state=true needs observation.state in the data (state_dim >= 1); "
                                 "set predict_state=false for image-only data")

    def with_data_shapes(self, features: dict[str, Any]) -> WorldModelConfig:
        """A complete copy whose data interface matches a store's features; fields already set must agree."""
        cameras = sorted(k.removeprefix("observation.images.") for k in features if k.startswith("observation.images."))
        if not cameras:
            raise RobodreamError("the data has no camera images (observation.images.*): a world model needs frames")
        camera = self.camera or cameras[0]
        if camera not in cameras:
            raise RobodreamError(f"the data has no camera {camera!r}; cameras: {', '.join(cameras)}")
        image_shape = features[f"observation.images.{camera}"]["shape"]
        if image_shape[0] != image_shape[1]:
            raise RobodreamError(f"camera {camera!r} frames are {image_shape[0]}x{image_shape[1]}; the world model "
                                 "needs square frames (re-import or collect with a square image size)")
        if "action" not in features:
            raise RobodreamError("the data has no 'action' feature: a world model is conditioned on actions")
        found = {
            "image_size": int(image_shape[0]),
            "action_dim": int(features["action"]["shape"][0]),
            "state_dim": int(features["observation.state"]["shape"][0]) if "observation.state" in features else 0,
        }
        for name, value in found.items():
            mine = getattr(self, name)
            if mine is not None and mine != value:
                raise RobodreamError(f"the model has {name}={mine} but the data has {value}: use data made for this "
                                     f"model, or train a new one (leave {name} unset to take it from the data)")
        predict_state = self.predict_state and found["state_dim"] > 0
        return replace(self, camera=camera, predict_state=predict_state, **found)

    @property
    def image_key(self) -> str:
        return f"observation.images.{self.camera}"

    def to_dict(self) -> dict[str, Any]:
        return {"model_type": MODEL_TYPE, "config_version": CONFIG_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> WorldModelConfig:
        """Rebuild from config.json, refusing other model types, newer versions and unknown fields."""
        data = dict(data)
        model_type = data.pop("model_type", None)
        version = data.pop("config_version", None)
        if model_type != MODEL_TYPE:
            raise RobodreamError(f"{source} describes a {model_type or 'unknown'!s} model, not a robodream world "
                                 f"model ({MODEL_TYPE})")
        if not isinstance(version, int) or version > CONFIG_VERSION:
            raise RobodreamError(f"{source} has world-model config version {version}; this robodream reads up to "
                                 f"{CONFIG_VERSION}: upgrade robodream")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RobodreamError(f"{source} has fields {unknown} this robodream does not know: it comes from "
                                 "another version or architecture")
        return cls(**data)
