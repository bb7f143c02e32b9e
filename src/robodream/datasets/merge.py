"""Joining episode stores: recordings made on different machines, or the per-device shards of a generation run.

Episodes are copied one at a time through `EpisodeWriter.append_episode`, so the validation of every append
holds. A new (or replaced) local store is built in a temporary sibling and renamed into place at the end
(`outputs.atomic_output`): a merge killed half-way leaves no store at all, never one that looks complete with
only some of the episodes. `append=true` adds to the existing store episode by episode (commit-last).
Stores must agree on what a frame is (features with the same dtypes and shapes, the same fps); the robot
type and cameras of the first store are kept. Stores of different tasks are joined only when asked
(`mixed_tasks=True`): the result then keeps every episode's task in meta/episode_task (like LeRobot's
task_index) and its `task` attribute lists the tasks ("push_cube | pick_place"). Without it they are refused,
since labelling every episode with the first store's task is silently wrong.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

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
    tasks: dict[str, int] = field(default_factory=dict)  # episodes merged per task


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


def check_tasks(stores: Sequence[EpisodeStore], mixed_tasks: bool) -> list[str]:
    """The tasks of the episodes of `stores`, in order of appearance; more than one is refused unless
    `mixed_tasks` (one line naming two stores and their tasks)."""
    tasks: dict[str, EpisodeStore] = {}
    for store in stores:
        for task in dict.fromkeys(store.episode_tasks() or [store.task]):
            tasks.setdefault(task, store)
    if len(tasks) > 1 and not mixed_tasks:
        (first, a), (second, b) = list(tasks.items())[:2]
        raise RobodreamError(f"{b.location} holds task {second!r} but {a.location} task {first!r}: pass "
                             "mixed_tasks=true to keep a task per episode (meta/episode_task; exported to LeRobot as "
                             "several tasks), or merge stores of one task")
    return list(tasks)


def merge_stores(sources: Sequence[str | os.PathLike], out: str | os.PathLike, overwrite: bool = False,
                 append: bool = False, progress: Callable[[int], None] | None = None,
                 mixed_tasks: bool = False) -> MergeReport:
    """Copy every committed episode of `sources`, in order, into `out` (created, or appended to with
    `append=True`). Per-episode metadata (source, success, seed, origin, task) is kept; stores of different
    tasks need `mixed_tasks=True` (see the module doc)."""
    if not sources:
        raise RobodreamError("nothing to merge: name at least one store")
    stores = [EpisodeStore.open(s, cache="disk") for s in sources]
    for other in stores[1:]:
        check_compatible(stores[0], other)
    first = stores[0]
    existing = EpisodeStore.open(out, cache="disk") if append and layout.store_exists(out) else None
    if existing is not None:
        check_compatible(existing, first)
    tasks = check_tasks([existing, *stores] if existing is not None else stores, mixed_tasks)
    mixed = " | ".join(tasks) if len(tasks) > 1 or (existing is not None and existing.mixed_tasks) else None
    if existing is not None:  # appends keep the commit-last protocol, episode by episode
        writer = EpisodeWriter.open(out)
        try:
            return _copy(stores, writer, mixed, progress)
        finally:
            writer.close(compute_stats=False)
    create = {"fps": first.fps, "features": dict(first.features), "robot_type": first.robot_type, "task": first.task,
              "cameras": first.cameras, "extra_attrs": {"merged_from": [str(s) for s in sources]}}
    if layout.is_url(out):  # object stores cannot rename: written in place
        return _copy(stores, create_store(out, overwrite=overwrite, **create), mixed, progress)
    hint = "pass append=true to add the episodes to it, or overwrite=true to replace it"
    with atomic_output(out, overwrite=overwrite, hint=hint) as temporary:
        return _copy(stores, create_store(temporary, **create), mixed, progress)


def _copy(stores: list[EpisodeStore], writer: EpisodeWriter, mixed: str | None,
          progress: Callable[[int], None] | None) -> MergeReport:
    """Append every committed episode of `stores`, in order, to `writer` (keeping each episode's task when the
    result holds several: `mixed` is then the store's "a | b" task), then store fresh stats."""
    if mixed is not None:
        writer.keep_episode_tasks(mixed)
    counts: dict[str, int] = {}
    per_task: dict[str, int] = {}
    frames = 0
    for store in stores:
        for index, task in enumerate(store.episode_tasks()):
            meta = store.episode_meta(index)
            writer.append_episode(store.episode(index), source=meta["source"], success=meta["success"],
                                  seed=meta["seed"], origin=meta["origin"], task=task)
            counts[meta["source"]] = counts.get(meta["source"], 0) + 1
            per_task[task] = per_task.get(task, 0) + 1
            frames += meta["length"]
            if progress is not None:
                progress(1)
    writer.close()
    return MergeReport(episodes=sum(counts.values()), frames=frames, sources=counts, tasks=per_task)
