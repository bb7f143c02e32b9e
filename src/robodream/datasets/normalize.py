"""Normalising low-dimensional features (states, actions) from store statistics, saved with checkpoints.

`Normalizer` is an nn.Module whose buffers hold, per feature, an affine map ``y = (x - offset) * scale``:

- ``"min_max"``: [min, max] -> [-1, 1] (Diffusion Policy's choice for actions: diffusion works in a bounded
  box);
- ``"mean_std"``: zero mean, unit variance;
- ``"identity"``.

Dimensions that never vary in the data (a gripper that never closes in push_cube) map to 0 instead of
dividing by zero. Because the maps are buffers, they travel in the model's state dict (safetensors) and a
loaded checkpoint normalises exactly as the trained one did; `config()` records which keys and modes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from robodream.errors import RobodreamError

MODES = ("min_max", "mean_std", "identity")
# Below this spread (in feature units) a dimension is treated as constant.
MIN_SPREAD = 1e-6


def _buffer_name(key: str) -> str:
    return key.replace(".", "__")  # module names cannot contain dots


def _affine(stats: Mapping[str, Any], mode: str) -> tuple[np.ndarray, np.ndarray]:
    if mode == "min_max":
        low, high = np.asarray(stats["min"], np.float64), np.asarray(stats["max"], np.float64)
        spread = high - low
        offset = (low + high) / 2
        scale = np.where(spread > MIN_SPREAD, 2.0 / np.maximum(spread, MIN_SPREAD), 1.0)
    elif mode == "mean_std":
        offset = np.asarray(stats["mean"], np.float64)
        std = np.asarray(stats["std"], np.float64)
        scale = np.where(std > MIN_SPREAD, 1.0 / np.maximum(std, MIN_SPREAD), 1.0)
    else:
        size = len(np.atleast_1d(stats["mean"]))
        offset, scale = np.zeros(size), np.ones(size)
    return offset.astype(np.float32), scale.astype(np.float32)


class Normalizer(nn.Module):
    """Affine normalisation of named features; see the module docstring."""

    def __init__(self, modes: Mapping[str, str], stats: Mapping[str, Mapping[str, Any]] | None = None,
                 sizes: Mapping[str, int] | None = None):
        """Build from `stats` (store.stats()["features"]), or, when loading a checkpoint, from `sizes`
        (feature sizes; the buffers are then filled by load_state_dict)."""
        super().__init__()
        self.modes = dict(modes)
        self.affines = nn.ModuleDict()
        for key, mode in self.modes.items():
            if mode not in MODES:
                raise RobodreamError(f"normalisation mode for {key!r} must be one of {MODES}, got {mode!r}")
            if stats is not None:
                if key not in stats:
                    raise RobodreamError(f"no statistics for {key!r}: the data has stats for {sorted(stats)}")
                offset, scale = _affine(stats[key], mode)
            elif sizes is not None and key in sizes:
                offset, scale = np.zeros(sizes[key], np.float32), np.ones(sizes[key], np.float32)
            else:
                raise RobodreamError(f"Normalizer needs stats or the size of {key!r}")
            affine = nn.Module()
            affine.register_buffer("offset", torch.from_numpy(offset))
            affine.register_buffer("scale", torch.from_numpy(scale))
            self.affines[_buffer_name(key)] = affine

    def config(self) -> dict[str, Any]:
        """What `from_config` needs to rebuild an empty normaliser of the same shape (for loading)."""
        return {"modes": self.modes,
                "sizes": {key: int(self.affines[_buffer_name(key)].offset.numel()) for key in self.modes}}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Normalizer:
        return cls(config["modes"], sizes=config["sizes"])

    def _get(self, key: str) -> nn.Module:
        name = _buffer_name(key)
        if name not in self.affines:
            raise RobodreamError(f"the normaliser has no feature {key!r} (it has {sorted(self.modes)})")
        return self.affines[name]

    def normalize(self, key: str, values: torch.Tensor) -> torch.Tensor:
        affine = self._get(key)
        return (values - affine.offset) * affine.scale

    def unnormalize(self, key: str, values: torch.Tensor) -> torch.Tensor:
        affine = self._get(key)
        return values / affine.scale + affine.offset


def merge_stats(parts: list[Mapping[str, Any]], weights: list[float] | None = None) -> dict[str, Any]:
    """Combine the stats of several stores (e.g. real + synthetic) as if their frames were pooled.

    min/max are taken over all parts; mean/std are pooled with weights (default: each part's num_frames).
    Only features present in every part are kept.
    """
    if not parts:
        raise RobodreamError("merge_stats needs at least one set of stats")
    weights = np.asarray(weights if weights is not None else [p["num_frames"] for p in parts], np.float64)
    weights = weights / weights.sum()
    keys = set.intersection(*(set(p["features"]) for p in parts))
    merged: dict[str, Any] = {"num_frames": int(sum(p["num_frames"] for p in parts)), "features": {}}
    for key in sorted(keys):
        feats = [p["features"][key] for p in parts]
        means = np.stack([np.asarray(f["mean"], np.float64) for f in feats])
        variances = np.stack([np.asarray(f["std"], np.float64) ** 2 for f in feats])
        mean = (weights[:, None] * means).sum(0)
        second = (weights[:, None] * (variances + means**2)).sum(0)
        merged["features"][key] = {
            "min": np.min([f["min"] for f in feats], axis=0).tolist(),
            "max": np.max([f["max"] for f in feats], axis=0).tolist(),
            "mean": mean.tolist(),
            "std": np.sqrt(np.maximum(second - mean**2, 0.0)).tolist(),
        }
    return merged
