"""Joining episode stores: recordings made on different machines, or the per-device shards of a generation run.

Episodes are copied one at a time through `EpisodeWriter.append_episode`, so the commit protocol and the
validation of every append hold: a merge interrupted half-way leaves the target with whole episodes only.
Stores must agree on what a frame is (features with the same dtypes and shapes, the same fps); the robot
type, task and cameras of the first store are kept.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from robodream.datasets import layout
from robodream.datasets.reader import EpisodeStore
from robodream.datasets.writer import EpisodeWriter, create_store
from robodream.errors import RobodreamError


@dataclass
class MergeReport:
    episodes: int
    frames: int
    sources: dict[str, int]


def _frame_layout(store: EpisodeStore) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {key: (f["dtype"], tuple(f["shape"])) for key, f in store.features.items()}


def check_compatible(first: EpisodeStore, other: EpisodeStore) -> None:
    """One clear error when two stores cannot be merged."""
    if first.fps != other.fps:
        raise RobodreamError(f"{other.location} records at {other.fps:g} fps but {first.location} at {first.fps:g}: "
                             "resample one of them (e.g. re-import with fps=...) before merging")
    mine, theirs = _frame_layout(first), _frame_layout(other)
    if mine != theirs:
        differing = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        details = "; ".join(f"{k}: {mine.get(k)} vs {theirs.get(k)}" for k in differing[:4])
        raise RobodreamError(f"{other.location} and {first.location} hold different features ({details})")


def merge_stores(sources: Sequence[str | os.PathLike], out: str | os.PathLike, overwrite: bool = False,
                 append: bool = False, progress: Callable[[int], None] | None = None) -> MergeReport:
    """Copy every committed episode of `sources`, in order, into `out` (created, or appended to with
    `append=True`). Per-episode metadata (source, success, seed, origin) is kept."""
    if not sources:
        raise RobodreamError("nothing to merge: name at least one store")
    stores = [EpisodeStore.open(s, cache="disk") for s in sources]
    for other in stores[1:]:
        check_compatible(stores[0], other)
    first = stores[0]
    if append and layout.store_exists(out):
        writer = EpisodeWriter.open(out)
        check_compatible(EpisodeStore.open(out, cache="disk"), first)
    else:
        features = {k: v for k, v in first.features.items()}
        writer = create_store(out, fps=first.fps, features=features, robot_type=first.robot_type, task=first.task,
                              cameras=first.cameras, overwrite=overwrite,
                              extra_attrs={"merged_from": [str(s) for s in sources]})
    counts: dict[str, int] = {}
    frames = 0
    for store in stores:
        for index in range(store.num_episodes):
            meta = store.episode_meta(index)
            writer.append_episode(store.episode(index), source=meta["source"], success=meta["success"],
                                  seed=meta["seed"], origin=meta["origin"])
            counts[meta["source"]] = counts.get(meta["source"], 0) + 1
            frames += meta["length"]
            if progress is not None:
                progress(1)
    writer.close()
    return MergeReport(episodes=sum(counts.values()), frames=frames, sources=counts)
