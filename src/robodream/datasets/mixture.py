"""Mixing several window datasets (e.g. real and synthetic stores) with per-sample probabilities.

`data=real.zarr:0.7,synthetic.zarr:0.3` means: each training sample comes from real.zarr with probability
0.7, whatever the sizes of the stores (a store ten times larger is not drawn ten times more often). This is
a weighted sampler over the concatenation: a window of part i has weight w_i / len_i, so part i's total
probability is w_i / sum(w). Batches are still built with one vectorised gather per part.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from robodream.datasets.resumable import ResumableSampler
from robodream.datasets.windows import WindowDataset, _keep_batch
from robodream.errors import RobodreamError


class MixtureDataset(Dataset):
    """The concatenation of window datasets with the same keys; items also carry `dataset_index`."""

    def __init__(self, parts: Sequence[WindowDataset]):
        if not parts:
            raise RobodreamError("a mixture needs at least one dataset")
        keys = [sorted(p.offsets) for p in parts]
        if any(k != keys[0] for k in keys):
            raise RobodreamError(f"datasets of a mixture must read the same keys, got {keys}")
        empty = [p.store.location for p in parts if len(p) == 0]
        if empty:
            raise RobodreamError(f"{empty[0]} holds no frames: remove it from the mixture")
        self.parts = list(parts)
        self.ends = np.cumsum([len(p) for p in parts])

    def __len__(self) -> int:
        return int(self.ends[-1])

    def __getitems__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        idx = np.asarray(indices, dtype=np.int64)
        part_of = np.searchsorted(self.ends, idx, side="right")
        starts = np.concatenate([[0], self.ends[:-1]])
        pieces, order = [], []
        for part in np.unique(part_of):
            chosen = np.flatnonzero(part_of == part)
            batch = self.parts[part].__getitems__((idx[chosen] - starts[part]).tolist())
            batch["dataset_index"] = torch.full((len(chosen),), int(part), dtype=torch.int64)
            pieces.append(batch)
            order.append(chosen)
        inverse = torch.from_numpy(np.argsort(np.concatenate(order), kind="stable"))
        return {key: torch.cat([p[key] for p in pieces])[inverse] for key in pieces[0]}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {key: value[0] for key, value in self.__getitems__([index]).items()}


def sample_weights(lengths: Sequence[int], weights: Sequence[float]) -> np.ndarray:
    """Per-sample weights over a concatenation so that part i is drawn with probability w_i / sum(w)."""
    weights = np.asarray(weights, dtype=np.float64)
    if len(weights) != len(lengths) or np.any(weights < 0) or weights.sum() <= 0:
        raise RobodreamError(f"mixture weights must be one non-negative number per dataset with a positive sum, "
                             f"got {list(weights)}")
    return np.concatenate([np.full(n, w / (n * weights.sum())) for n, w in zip(lengths, weights, strict=True)])


def make_mixture_loader(mixture: MixtureDataset, weights: Sequence[float], batch_size: int,
                        num_workers: int = 0, seed: int | None = None, drop_last: bool = True) -> DataLoader:
    """A DataLoader drawing `len(mixture)` samples per epoch with replacement, part i with probability
    w_i / sum(w); each batch is built with batched `__getitems__` calls."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    per_sample = torch.from_numpy(sample_weights([len(p) for p in mixture.parts], weights))
    sampler = WeightedRandomSampler(per_sample, num_samples=len(mixture), replacement=True, generator=generator)
    if generator is not None:
        sampler = ResumableSampler(sampler, generator)
    return DataLoader(mixture, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      drop_last=drop_last, collate_fn=_keep_batch, persistent_workers=num_workers > 0)
