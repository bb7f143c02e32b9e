"""The denoiser of the diffusion policy: a 1-D temporal U-Net over the action chunk with FiLM conditioning.

Chi et al. 2023 (§3.3, "CNN-based Diffusion Policy"; the ConditionalUnet1D of their code): the noisy action
sequence (B, Tp, A) is convolved along time; every residual block is modulated by FiLM (Perez et al. 2018,
per-channel scale and bias) computed from the diffusion-step embedding concatenated with the observation
features. Conditioning on observations only through FiLM (not as extra sequence channels) is what lets the
observation horizon differ from the action horizon.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class SinusoidalEmbedding(nn.Module):
    """Transformer-style sinusoidal embedding of the diffusion step (Vaswani et al. 2017; Ho et al. 2020)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device) / max(half - 1, 1))
        angles = t.float()[:, None] * freqs[None]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class ConvBlock(nn.Sequential):
    """Conv1d -> GroupNorm -> Mish."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, num_groups: int):
        super().__init__(nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
                         nn.GroupNorm(num_groups, out_channels), nn.Mish())


class FiLMResidualBlock(nn.Module):
    """Two conv blocks; the first one's output is scaled and shifted by FiLM from the conditioning vector."""

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int, kernel_size: int, num_groups: int):
        super().__init__()
        self.block1 = ConvBlock(in_channels, out_channels, kernel_size, num_groups)
        self.block2 = ConvBlock(out_channels, out_channels, kernel_size, num_groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * out_channels))
        self.residual = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, bias = self.film(cond)[:, :, None].chunk(2, dim=1)
        out = self.block1(x) * scale + bias
        return self.block2(out) + self.residual(x)


class ConditionalUnet1D(nn.Module):
    """eps_theta(a^k, k, obs): (B, T, A) noisy actions, (B,) steps, (B, C) observation features -> (B, T, A)."""

    def __init__(self, action_dim: int, cond_dim: int, down_dims: list[int], kernel_size: int = 5,
                 num_groups: int = 8, step_embed_dim: int = 64):
        super().__init__()
        self.step_encoder = nn.Sequential(SinusoidalEmbedding(step_embed_dim),
                                          nn.Linear(step_embed_dim, 4 * step_embed_dim), nn.Mish(),
                                          nn.Linear(4 * step_embed_dim, step_embed_dim))
        cond = step_embed_dim + cond_dim
        block = lambda i, o: FiLMResidualBlock(i, o, cond, kernel_size, num_groups)  # noqa: E731
        dims = [action_dim, *down_dims]
        self.down = nn.ModuleList()
        for level, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            last = level == len(down_dims) - 1
            self.down.append(nn.ModuleList([
                block(d_in, d_out), block(d_out, d_out),
                nn.Conv1d(d_out, d_out, 3, 2, 1) if not last else nn.Identity()]))
        self.mid = nn.ModuleList([block(down_dims[-1], down_dims[-1]), block(down_dims[-1], down_dims[-1])])
        self.up = nn.ModuleList()
        for d_in, d_out in reversed(list(zip(down_dims[:-1], down_dims[1:], strict=True))):
            # input: the upsampled path (d_out) concatenated with the skip connection (d_out)
            self.up.append(nn.ModuleList([
                block(2 * d_out, d_in), block(d_in, d_in), nn.ConvTranspose1d(d_in, d_in, 4, 2, 1)]))
        self.final = nn.Sequential(ConvBlock(down_dims[0], down_dims[0], kernel_size, num_groups),
                                   nn.Conv1d(down_dims[0], action_dim, 1))

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | int, cond: torch.Tensor) -> torch.Tensor:
        x = sample.transpose(1, 2)  # (B, A, T): convolve along time
        if not torch.is_tensor(timestep) or timestep.ndim == 0:
            timestep = torch.as_tensor(timestep, device=x.device).reshape(1).expand(x.shape[0])
        film = torch.cat([self.step_encoder(timestep), cond], dim=-1)
        skips = []
        for block1, block2, downsample in self.down:
            x = block2(block1(x, film), film)
            skips.append(x)
            x = downsample(x)
        for block in self.mid:
            x = block(x, film)
        for block1, block2, upsample in self.up:
            x = torch.cat([x, skips.pop()], dim=1)
            x = upsample(block2(block1(x, film), film))
        return self.final(x).transpose(1, 2)
