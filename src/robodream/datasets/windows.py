"""Fixed-length training windows over an episode store, with edge padding, and train/val splits.

A window is anchored at one frame t of an episode and reads, per key, the frames t + d for a list of
offsets d (LeRobot calls them delta indices). Offsets that fall before the episode's first frame or after
its last repeat the edge frame (Diffusion Policy's SequenceSampler does the same) and are flagged in
``<key>_is_pad``. Example for a world model with K = 4 context frames predicting frame t + 1:

    {"observation.images.front": [-3, -2, -1, 0, 1], "action": [-3, -2, -1, 0]}
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from robodream.datasets.reader import EpisodeStore
from robodream.datasets.resumable import ResumableSampler
from robodream.errors import RobodreamError


def split_episodes(num_episodes: int, val_fraction: float = 0.1, seed: int = 0) -> tuple[list[int], list[int]]:
    """Split episode indices into train and validation sets, reproducibly.

    At least one episode goes to validation when val_fraction > 0 and there are two or more episodes.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise RobodreamError(f"val_fraction must be in [0, 1), got {val_fraction}")
    order = np.random.default_rng(seed).permutation(num_episodes)
    num_val = int(round(num_episodes * val_fraction))
    if val_fraction > 0 and num_episodes >= 2:
        num_val = max(1, num_val)
    num_val = min(num_val, max(0, num_episodes - 1))
    return sorted(order[num_val:].tolist()), sorted(order[:num_val].tolist())


class WindowDataset(Dataset):
    """Windows of frames around every frame of the selected episodes.

    Items are dicts of tensors: ``key -> (len(offsets), *feature_shape)`` in the store's dtype (images stay
    uint8 HWC; converting them is the model's job, on its device) and ``key + "_is_pad" -> bool``.
    `__getitems__` builds a whole batch with one vectorised gather per key, which is what makes loading
    from RAM cheap; use `make_loader` to get a DataLoader that uses it.
    """

    def __init__(self, store: EpisodeStore, delta_indices: dict[str, Sequence[int]],
                 episodes: Sequence[int] | None = None, skip_first: Sequence[int] | None = None):
        """`skip_first`: per selected episode, how many leading frames to leave out entirely (neither anchors nor
        padding read them): a synthetic episode's real context frames, for a policy that must learn from
        imagined frames only (datasets/imagined.py)."""
        if not delta_indices:
            raise RobodreamError("delta_indices is empty: name at least one key and its frame offsets")
        for key, offsets in delta_indices.items():
            if key not in store.features:
                raise RobodreamError(f"{store.location} has no feature {key!r} (it holds {sorted(store.features)})")
            if len(offsets) == 0:
                raise RobodreamError(f"no frame offsets given for {key!r}")
        self.store = store
        self.offsets = {key: np.asarray(list(offsets), dtype=np.int64) for key, offsets in delta_indices.items()}
        self.episodes = np.asarray(list(range(store.num_episodes)) if episodes is None else list(episodes), np.int64)
        if len(self.episodes) and (self.episodes.min() < 0 or self.episodes.max() >= store.num_episodes):
            raise RobodreamError(f"episode indices must be in [0, {store.num_episodes}), got {list(episodes)}")
        starts = store.episode_starts[self.episodes]
        ends = store.episode_ends[self.episodes]
        if skip_first is not None:
            skip = np.asarray(list(skip_first), np.int64)
            if skip.shape != starts.shape or (skip < 0).any() or (starts + skip >= ends).any():
                raise RobodreamError(f"skip_first={list(skip_first)} must give, per selected episode, a number of "
                                     "leading frames that leaves at least one frame")
            starts = starts + skip
        lengths = ends - starts
        # One anchor per frame; remember each anchor's episode bounds for padding.
        self._first = np.repeat(starts, lengths)
        self._anchor = self._first + (np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths))
        self._last = np.repeat(ends - 1, lengths)

    def __len__(self) -> int:
        return len(self._anchor)

    def __getitems__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        idx = np.asarray(indices, dtype=np.int64)
        anchor, first, last = self._anchor[idx, None], self._first[idx, None], self._last[idx, None]
        batch: dict[str, torch.Tensor] = {}
        for key, offsets in self.offsets.items():
            wanted = anchor + offsets[None, :]
            frames = np.clip(wanted, first, last)
            batch[key] = torch.from_numpy(np.ascontiguousarray(self.store.gather(key, frames)))
            batch[f"{key}_is_pad"] = torch.from_numpy((wanted < first) | (wanted > last))
        batch["frame_index"] = torch.from_numpy(self._anchor[idx])
        return batch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {key: value[0] for key, value in self.__getitems__([index]).items()}


def _keep_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`__getitems__` already returns a collated batch."""
    return batch


def make_loader(dataset: WindowDataset, batch_size: int, shuffle: bool = True, num_workers: int = 0,
                drop_last: bool = False, seed: int | None = None) -> DataLoader:
    """A DataLoader that builds each batch with one `__getitems__` call (no per-item collation)."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    sampler = None
    if shuffle and generator is not None:
        # the sampler DataLoader(shuffle=True, generator=...) builds, made resumable (datasets/resumable.py)
        sampler = ResumableSampler(RandomSampler(dataset, generator=generator), generator)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                      num_workers=num_workers, drop_last=drop_last, collate_fn=_keep_batch, generator=generator,
                      persistent_workers=num_workers > 0)
