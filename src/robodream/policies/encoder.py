"""Observation encoder: per-camera convolutional encoders (trained from scratch) + the proprioceptive state.

The image encoder follows Diffusion Policy's vision backbone (Chi et al. 2023, §3.2): a ResNet whose
BatchNorm is replaced by GroupNorm (BatchNorm and EMA weights do not mix well) and whose global average
pooling is replaced by a spatial softmax (Levine et al. 2016, "End-to-End Training of Deep Visuomotor
Policies"; robomimic's keypoint head), which keeps *where* things are in the image, what a pushing policy
needs. Scaled down for 64x64 frames and CPU training: a stride-2 stem and one residual block per stage.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robodream.policies.configuration import EncoderConfig


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with GroupNorm and a (projected when needed) shortcut: He et al. 2016."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, num_groups: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.norm1 = nn.GroupNorm(num_groups, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.norm2 = nn.GroupNorm(num_groups, out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                          nn.GroupNorm(num_groups, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class SpatialSoftmax(nn.Module):
    """Feature map -> K keypoints: the softmax-weighted mean (x, y) of each of K learned attention maps."""

    def __init__(self, in_channels: int, num_keypoints: int, height: int, width: int):
        super().__init__()
        self.keypoints = nn.Conv2d(in_channels, num_keypoints, 1)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        # constant coordinate grid: a buffer so it follows .to(device); not trained, not saved
        self.register_buffer("grid", torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attention = self.keypoints(x).flatten(2).softmax(dim=-1)  # (B, K, H*W)
        return (attention @ self.grid).flatten(1)  # (B, 2K) expected coordinates in [-1, 1]


class ImageEncoder(nn.Module):
    """(B, 3, H, W) normalised image -> (B, feature_dim)."""

    def __init__(self, cfg: EncoderConfig, height: int, width: int):
        super().__init__()
        first = cfg.channels[0]
        self.stem = nn.Sequential(nn.Conv2d(3, first, 3, 2, 1, bias=False), nn.GroupNorm(cfg.num_groups, first),
                                  nn.ReLU())
        blocks = []
        in_channels = first
        for stage, channels in enumerate(cfg.channels):
            for block in range(cfg.blocks_per_stage):
                stride = 2 if stage > 0 and block == 0 else 1
                blocks.append(ResidualBlock(in_channels, channels, stride, cfg.num_groups))
                in_channels = channels
        self.blocks = nn.Sequential(*blocks)
        with torch.no_grad():  # the feature-map size, by running the conv stack once on a dummy image
            h, w = self.blocks(self.stem(torch.zeros(1, 3, height, width))).shape[-2:]
        self.pool = SpatialSoftmax(in_channels, cfg.num_keypoints, h, w)
        self.out = nn.Sequential(nn.Linear(2 * cfg.num_keypoints, cfg.feature_dim), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.pool(self.blocks(self.stem(x))))


def random_shift(images: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift each sample by up to `pad` pixels (replicate-padded, then cropped back): the augmentation of
    DrQ (Kostrikov et al. 2020), the cheap cousin of Diffusion Policy's random crop.

    images: (B, T, C, H, W); every time step of a sample gets the same shift, so motion between frames is
    preserved.
    """
    if pad <= 0:
        return images
    b, t, c, h, w = images.shape
    padded = F.pad(images.reshape(b, t * c, h, w), (pad, pad, pad, pad), mode="replicate")
    dy, dx = torch.randint(0, 2 * pad + 1, (2, b, 1), generator=generator, device=images.device)
    rows = (torch.arange(h, device=images.device)[None] + dy)[:, :, None]  # (B, H, 1)
    cols = (torch.arange(w, device=images.device)[None] + dx)[:, None, :]  # (B, 1, W)
    batch = torch.arange(b, device=images.device)[:, None, None]
    shifted = padded.permute(0, 2, 3, 1)[batch, rows, cols]  # (B, H, W, T*C)
    return shifted.permute(0, 3, 1, 2).reshape(b, t, c, h, w)


class ObservationEncoder(nn.Module):
    """Observation window -> one conditioning vector: per time step, every camera's features + the state."""

    def __init__(self, cfg: EncoderConfig, image_shapes: dict[str, list[int]], state_dim: int):
        super().__init__()
        self.image_keys = sorted(image_shapes)
        self.shift = cfg.random_shift
        # one encoder per camera (cameras see different things); module names cannot contain dots
        self.cameras = nn.ModuleDict({key.replace(".", "__"): ImageEncoder(cfg, *image_shapes[key][:2])
                                      for key in self.image_keys})
        self.state_dim = state_dim
        self.step_dim = cfg.feature_dim * len(self.image_keys) + state_dim

    def forward(self, images: dict[str, torch.Tensor], state: torch.Tensor | None, augment: bool) -> torch.Tensor:
        """images: key -> (B, T, 3, H, W) normalised; state: (B, T, S) normalised or None.
        Returns (B, T * step_dim)."""
        parts = []
        for key in self.image_keys:
            x = images[key]
            if augment:
                x = random_shift(x, self.shift)
            b, t = x.shape[:2]
            parts.append(self.cameras[key.replace(".", "__")](x.flatten(0, 1)).reshape(b, t, -1))
        if state is not None:
            parts.append(state)
        return torch.cat(parts, dim=-1).flatten(1)
