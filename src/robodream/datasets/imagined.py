"""The imagined part of synthetic episodes: a synthetic episode (written by `robodream generate`) starts with the
K real context frames of the real episode it was imagined from, then holds the imagined frames. A policy that
must learn from the dream alone (experiment augment's synthetic-only arm) reads only the imagined part: its
training windows skip the context frames (WindowDataset's `skip_first`) and so do its normalisation statistics.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from robodream.datasets.reader import EpisodeStore
from robodream.datasets.stats import compute_stats
from robodream.errors import RobodreamError

#: at most this many imagined frames are read for the image statistics (evenly spaced), as stats.py bounds them
IMAGE_SAMPLE = 4096


def context_frames(store: EpisodeStore) -> list[int]:
    """Per episode, the number of real context frames a synthetic episode starts with (its origin's
    `context_frames`): pass it as WindowDataset's `skip_first` to train on imagined frames only.

    Raises when the store holds an episode that is not synthetic: its frames are all real."""
    skip = []
    for index in range(store.num_episodes):
        meta = store.episode_meta(index)
        if meta["source"] != "synthetic":
            raise RobodreamError(f"{store.location} episode {index} is {meta['source']!r}, not synthetic: "
                                 "imagined-only training reads stores that `robodream generate` wrote")
        skip.append(int(json.loads(meta["origin"])["context_frames"]))
    return skip


def imagined_frame_indices(store: EpisodeStore) -> np.ndarray:
    """The store-wide indices of every imagined frame (each episode without its context frames)."""
    skip = np.asarray(context_frames(store), np.int64)
    starts, ends = store.episode_starts + skip, store.episode_ends
    return np.concatenate([np.arange(a, b) for a, b in zip(starts, ends, strict=True)])


def imagined_stats(store: EpisodeStore, keys: Sequence[str]) -> dict[str, Any]:
    """Normalisation statistics of `keys` over the imagined frames only (the layout of EpisodeStore.stats())."""
    store.check_finite(list(keys))  # as EpisodeStore.stats() does
    frames = imagined_frame_indices(store)
    sample = frames[np.linspace(0, len(frames) - 1, min(len(frames), IMAGE_SAMPLE)).round().astype(int)]
    result: dict[str, Any] = {"num_frames": int(len(frames)), "features": {}}
    for key in keys:
        feature = store.features[key]
        is_image = np.dtype(feature["dtype"]) == np.uint8 and len(feature["shape"]) == 3
        chosen = sample if is_image else frames
        part = compute_stats({key: store.gather(key, chosen)}, len(chosen), {key: feature})
        result["features"].update(part["features"])
    return result
