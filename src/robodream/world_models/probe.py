"""The state-and-success probe: reads a frame, predicts where things are and whether the task is done.

Trained on real (recorded) stores, it labels frames that have no ground truth — imagined ones — with the
low-dimensional quantities a simulator would report: the end-effector position, the cube position, the goal
position, and the probability that the task's success test holds. Generation uses it to label synthetic
episodes and to filter them by success; evaluation in imagination uses it as the success signal.

The network is a plain strided CNN whose last feature map is flattened (not average-pooled: positions must
survive), followed by an MLP with two heads: positions (normalised with the training data's mean/std) and a
success logit. Saved like the world model (robodream.pretrained): config.json + model.safetensors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from robodream.datasets.normalize import Normalizer
from robodream.errors import RobodreamError
from robodream.pretrained import PretrainedMixin

PROBE_TYPE = "robodream.probe.cnn"
POSITIONS = "positions"


@dataclass
class ProbeTarget:
    """One predicted position: `size` values taken from feature `key` starting at `start`."""

    name: str
    key: str
    start: int
    size: int = 3


def _default_targets() -> list[ProbeTarget]:
    # The sim stores' layouts: observation.state = [ee xyz, gripper, q1..q7]; environment_state = [cube xyz,
    # cube quaternion, goal xyz].
    return [ProbeTarget("ee", "observation.state", 0), ProbeTarget("cube", "observation.environment_state", 0),
            ProbeTarget("goal", "observation.environment_state", 7)]


@dataclass
class ProbeConfig:
    image_size: int | None = None  # None: from the training store
    camera: str = "front"
    targets: list[ProbeTarget] = field(default_factory=_default_targets)
    #: per-frame success label: this feature > 0.5 (the sim stores' reward is 1 exactly where success holds)
    success_key: str = "reward"
    channels: list[int] = field(default_factory=lambda: [32, 64, 128, 128])
    hidden: int = 256

    def __post_init__(self) -> None:
        self.targets = [ProbeTarget(**t) if isinstance(t, dict) else t for t in self.targets]
        if not self.targets:
            raise RobodreamError("the probe needs at least one target position")
        if self.image_size is not None and self.image_size % (2 ** len(self.channels)):
            raise RobodreamError(f"probe image_size={self.image_size} must be divisible by 2^{len(self.channels)}")

    @property
    def image_key(self) -> str:
        return f"observation.images.{self.camera}"

    @property
    def num_positions(self) -> int:
        return sum(t.size for t in self.targets)

    def check_features(self, features: dict[str, Any]) -> None:
        """One clear error when a store lacks what the probe reads or learns from."""
        needed = [self.image_key, self.success_key] + [t.key for t in self.targets]
        missing = sorted({k for k in needed if k not in features})
        if missing:
            raise RobodreamError(f"the probe needs {missing} in the data (it has {sorted(features)}); probes train on "
                                 "simulated stores, which record the ground-truth state")
        for target in self.targets:
            size = features[target.key]["shape"][0] if features[target.key]["shape"] else 1
            if target.start + target.size > size:
                raise RobodreamError(f"probe target {target.name} reads {target.key}[{target.start}:"
                                     f"{target.start + target.size}] but that feature has {size} values")

    def to_dict(self) -> dict[str, Any]:
        return {"model_type": PROBE_TYPE, **asdict(self)}


def target_values(config: ProbeConfig, data: dict[str, Any]) -> np.ndarray:
    """The concatenated target positions (N, num_positions) from a dict of per-frame arrays."""
    return np.concatenate([np.asarray(data[t.key])[:, t.start : t.start + t.size] for t in config.targets], axis=1)


class StateSuccessProbe(nn.Module, PretrainedMixin):
    """Frame -> (positions, success logit)."""

    model_kind = "probe"
    missing_hint = " (train one with `robodream train-probe`)"

    def __init__(self, config: ProbeConfig, normalizer: Normalizer | None = None):
        super().__init__()
        if config.image_size is None:
            raise RobodreamError("the probe config does not know its image size: set image_size or build it from "
                                 "a store")
        self.config = config
        layers: list[nn.Module] = []
        channels = [3, *config.channels]
        for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.GroupNorm(8, c_out), nn.SiLU()]
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        cells = (config.image_size // 2 ** len(config.channels)) ** 2
        self.trunk = nn.Sequential(nn.Linear(cells * channels[-1], config.hidden), nn.SiLU())
        self.positions = nn.Linear(config.hidden, config.num_positions)
        self.success = nn.Linear(config.hidden, 1)
        self.normalizer = normalizer or Normalizer({POSITIONS: "mean_std"}, sizes={POSITIONS: config.num_positions})

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frames (B, H, W, 3) uint8 -> normalised positions (B, P), success logits (B,)."""
        x = frames.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        features = self.trunk(self.encoder(x))
        return self.positions(features), self.success(features).squeeze(-1)

    @torch.inference_mode()
    def predict(self, frames: np.ndarray | torch.Tensor, batch_size: int = 256) -> dict[str, np.ndarray]:
        """Positions in data units per target name, plus "success_prob", for (N, H, W, 3) uint8 frames."""
        frames = torch.as_tensor(np.asarray(frames))
        expected = (self.config.image_size, self.config.image_size, 3)
        if frames.ndim != 4 or tuple(frames.shape[1:]) != expected:
            raise RobodreamError(f"the probe reads frames of shape {expected}, got {tuple(frames.shape[1:])}")
        device = next(self.parameters()).device
        positions, probs = [], []
        for start in range(0, len(frames), batch_size):
            pos, logit = self(frames[start : start + batch_size].to(device))
            positions.append(self.normalizer.unnormalize(POSITIONS, pos).cpu())
            probs.append(torch.sigmoid(logit).cpu())
        stacked = torch.cat(positions).numpy() if positions else np.zeros((0, self.config.num_positions), np.float32)
        out, offset = {}, 0
        for target in self.config.targets:
            out[target.name] = stacked[:, offset : offset + target.size]
            offset += target.size
        out["success_prob"] = torch.cat(probs).numpy() if probs else np.zeros(0, np.float32)
        return out

    # -- saving (robodream.pretrained: save_pretrained / from_pretrained) -------------------------------------
    def pretrained_config(self) -> dict[str, Any]:
        return self.config.to_dict()

    @classmethod
    def _from_pretrained_config(cls, config: dict[str, Any], directory: Path) -> StateSuccessProbe:
        meta = dict(config)
        if meta.pop("model_type", None) != PROBE_TYPE:
            raise RobodreamError(f"{directory} is not a robodream probe")
        known = {f.name for f in fields(ProbeConfig)}
        if set(meta) - known:
            raise RobodreamError(f"{directory} has probe fields {sorted(set(meta) - known)} this robodream does not "
                                 "know")
        return cls(ProbeConfig(**meta))


def sustained(flags: np.ndarray, frames: int) -> np.ndarray:
    """(B, T) per-frame flags -> True at step t when the last `frames` steps (t included) were all flagged: a
    success that has held for `frames` frames, not one frame's misreading. frames=1 returns `flags`."""
    flags = np.asarray(flags, dtype=bool)
    if frames <= 1:
        return flags
    run = np.zeros(flags.shape, dtype=np.int64)
    for t in range(flags.shape[1]):
        run[:, t] = np.where(flags[:, t], (run[:, t - 1] if t else 0) + 1, 0)
    return run >= frames
