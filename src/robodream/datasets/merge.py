"""Joining episode stores: recordings made on different machines, or the per-device shards of a generation run.

Episodes are copied one at a time through `EpisodeWriter.append_episode`, so the validation of every append
holds. A new (or replaced) local store is built in a temporary sibling and renamed into place at the end
(`outputs.atomic_output`): a merge killed half-way leaves no store at all, never one that looks complete with
only some of the episodes. `append=true` adds to the existing store episode by episode (commit-last).
Stores must agree on what a frame is (features with the same dtypes and shapes, the same fps); the robot
type, task and cameras of the first store are kept.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from robodream.datasets import layout
from robodream.datasets.outputs import atomic_output
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
    if append and layout.store_exists(out):  # appends keep the commit-last protocol, episode by episode
        writer = EpisodeWriter.open(out)
        try:
            check_compatible(EpisodeStore.open(out, cache="disk"), first)
            return _copy(stores, writer, progress)
        finally:
            writer.close(compute_stats=False)
    create = {"fps": first.fps, "features": dict(first.features), "robot_type": first.robot_type, "task": first.task,
              "cameras": first.cameras, "extra_attrs": {"merged_from": [str(s) for s in sources]}}
    if layout.is_url(out):  # object stores cannot rename: written in place
        return _copy(stores, create_store(out, overwrite=overwrite, **create), progress)
    hint = "pass append=true to add the episodes to it, or overwrite=true to replace it"
    with atomic_output(out, overwrite=overwrite, hint=hint) as temporary:
        return _copy(stores, create_store(temporary, **create), progress)


def _copy(stores: list[EpisodeStore], writer: EpisodeWriter, progress: Callable[[int], None] | None) -> MergeReport:
    """Append every committed episode of `stores`, in order, to `writer`, then store fresh stats."""
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
