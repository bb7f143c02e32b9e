"""Normalisation statistics of an episode store, computed once and kept in the group attributes.

Low-dimensional float features get min / max / mean / std over every committed frame. Images get
per-channel mean / std (in 0-1 units) from an evenly spaced subset of chunks, which is plenty for
normalisation and keeps the cost bounded on large stores.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robodream.features import Feature

# Images are read in blocks of this many frames; at most MAX_IMAGE_BLOCKS blocks are used.
IMAGE_BLOCK_FRAMES = 256
MAX_IMAGE_BLOCKS = 32
LOWDIM_BLOCK_FRAMES = 1 << 16


def _lowdim_stats(array: Any, num_frames: int) -> dict[str, list[float]]:
    total = total_sq = None
    low = high = None
    for start in range(0, num_frames, LOWDIM_BLOCK_FRAMES):
        block = np.asarray(array[start : min(num_frames, start + LOWDIM_BLOCK_FRAMES)], dtype=np.float64)
        block = block.reshape(len(block), -1)
        block_sum, block_sq = block.sum(0), (block**2).sum(0)
        total = block_sum if total is None else total + block_sum
        total_sq = block_sq if total_sq is None else total_sq + block_sq
        low = block.min(0) if low is None else np.minimum(low, block.min(0))
        high = block.max(0) if high is None else np.maximum(high, block.max(0))
    mean = total / num_frames
    std = np.sqrt(np.maximum(total_sq / num_frames - mean**2, 0.0))
    return {"min": low.tolist(), "max": high.tolist(), "mean": mean.tolist(), "std": std.tolist()}


def _image_stats(array: Any, num_frames: int) -> dict[str, list[float]]:
    starts = np.arange(0, num_frames, IMAGE_BLOCK_FRAMES)
    if len(starts) > MAX_IMAGE_BLOCKS:
        starts = starts[np.linspace(0, len(starts) - 1, MAX_IMAGE_BLOCKS).round().astype(int)]
    total = np.zeros(3)
    total_sq = np.zeros(3)
    count = 0
    for start in starts:
        block = np.asarray(array[start : min(num_frames, start + IMAGE_BLOCK_FRAMES)], dtype=np.float64) / 255.0
        pixels = block.reshape(-1, block.shape[-1])
        total += pixels.sum(0)
        total_sq += (pixels**2).sum(0)
        count += len(pixels)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return {"min": [0.0] * 3, "max": [1.0] * 3, "mean": mean.tolist(), "std": std.tolist()}


def compute_stats(arrays: dict[str, Any], num_frames: int, features: dict[str, Feature]) -> dict[str, Any]:
    """Stats for every numeric feature of a store over its first `num_frames` (committed) frames.

    `arrays` maps keys to numpy or zarr arrays. Returns {"num_frames": N, "features": {key: {min, max,
    mean, std}}}; integer (non-image) and string features are skipped.
    """
    result: dict[str, Any] = {"num_frames": int(num_frames), "features": {}}
    if num_frames == 0:
        return result
    for key, feature in features.items():
        dtype = np.dtype(feature["dtype"])
        is_image = dtype == np.uint8 and len(feature["shape"]) == 3
        if is_image:
            result["features"][key] = _image_stats(arrays[key], num_frames)
        elif dtype.kind in "fb":
            result["features"][key] = _lowdim_stats(arrays[key], num_frames)
    return result
