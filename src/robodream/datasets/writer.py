"""Creating episode stores, appending episodes, and repairing stores a crash left behind.

Commit protocol (design.md §2): an episode's frames go into data/* first, then its per-episode metadata,
and only then does meta/episode_ends grow. Zarr's LocalStore writes each key atomically but has no
multi-key transaction, so this order is what guarantees that a crash, a kill or a full disk leaves, at
worst, uncommitted trailing frames, which `repair_store` (run automatically before every append) drops.

Outputs (datasets/outputs.py): `create_store` replaces only an episode store, and only with overwrite=true
(anything else at its location is refused), and builds the empty store in a temporary sibling renamed into
place; every writer (`create_store`, `EpisodeWriter.open`, `repair_store`) holds the store's lock file until
it is closed, so two processes never write one store.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from robodream.datasets import layout, outputs
from robodream.datasets.integrity import open_array, read_episode_ends
from robodream.datasets.stats import compute_stats
from robodream.errors import RobodreamError
from robodream.features import Feature

# Aim for ~1 MiB (uncompressed) image chunks; low-dimensional arrays use fixed chunks so that appending
# one episode rewrites little.
IMAGE_CHUNK_BYTES = 1 << 20
LOWDIM_CHUNK_FRAMES = 2048
META_CHUNK = 1024


def _frame_chunk(feature: Feature) -> int:
    shape = feature["shape"]
    if len(shape) >= 2:  # images / maps: chunk by bytes
        frame_bytes = int(np.prod(shape)) * np.dtype(feature["dtype"]).itemsize
        return int(min(1024, max(1, IMAGE_CHUNK_BYTES // frame_bytes)))
    return LOWDIM_CHUNK_FRAMES


def _as_json(value: Any) -> Any:
    """Attributes must be JSON: turn tuples into lists and numpy scalars into Python numbers."""
    if isinstance(value, dict):
        return {str(k): _as_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_json(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def create_store(
    location: str | os.PathLike,
    *,
    fps: float,
    features: dict[str, Feature],
    robot_type: str,
    task: str,
    cameras: dict[str, dict] | None = None,
    extra_attrs: dict[str, Any] | None = None,
    overwrite: bool = False,
    storage_options: dict | None = None,
) -> EpisodeWriter:
    """Create an empty episode store with one data array per feature (plus data/timestamp).

    Follows the output rule of `outputs`: an existing store is replaced only with `overwrite`, anything else
    at `location` is refused; the store is built in a temporary sibling and renamed into place; the returned
    writer holds the store's writer lock until it is closed.
    """
    if fps <= 0:
        raise RobodreamError(f"fps must be positive, got {fps}")
    features = dict(features)
    features.setdefault(layout.TIMESTAMP, {"dtype": "float32", "shape": [], "names": None})
    for key, feature in features.items():
        if "dtype" not in feature or "shape" not in feature:
            raise RobodreamError(f"feature {key!r} needs 'dtype' and 'shape', got {feature}")
    attrs = _as_json({"format": layout.FORMAT, "version": layout.FORMAT_VERSION, "fps": fps, "robot_type": robot_type,
                      "task": task, "features": features, "cameras": cameras or {}, **(extra_attrs or {})})
    hint = "pass overwrite=true to replace it, or resume=true to add to it"
    if layout.is_url(location):
        _check_url_output(location, overwrite, storage_options, hint)
        return EpisodeWriter(_build_store(location, features, attrs, storage_options), location)
    target = layout.local_path(location)
    if outputs.is_temporary(target):  # already private to a writer holding the lock of what it becomes
        outputs.check_output(target, overwrite=overwrite, hint=hint)
        return EpisodeWriter(_build_store(target, features, attrs), location)
    lock = outputs.claim_output(target, overwrite=overwrite, hint=hint)
    try:
        # Built in a temporary sibling and renamed into place: a kill never leaves a half-made store at `location`.
        with outputs.atomic_output(target, overwrite=overwrite, hint=hint, lock=lock) as temporary:
            _build_store(temporary, features, attrs)
        return EpisodeWriter(layout.open_group(target, read_only=False), location, lock=lock)
    except BaseException:
        lock.release()
        raise


def _check_url_output(location: str, overwrite: bool, storage_options: dict | None, hint: str) -> None:
    """At a URL, the same rule as `outputs.check_output`: replace only an episode store, and only with overwrite."""
    if layout.store_exists(location, storage_options):
        if not overwrite:
            raise RobodreamError(f"{location} already exists: {hint}")
        return
    import fsspec

    fs, path = fsspec.core.url_to_fs(str(location), **(storage_options or {}))
    if fs.exists(path) and fs.ls(path):
        raise RobodreamError(f"{location} holds objects but is not an episode store; refusing to replace it: "
                             "choose another output path")


def _build_store(location, features: dict[str, Feature], attrs: dict[str, Any],
                 storage_options: dict | None = None) -> zarr.Group:
    """Write an empty store (mode "w": only ever called where `outputs.check_output` allowed replacing)."""
    try:
        group = zarr.open_group(layout.make_zarr_store(location, False, storage_options), mode="w")
        for key, feature in features.items():
            shape = tuple(feature["shape"])
            group.create_array(
                f"{layout.DATA}/{key}", shape=(0, *shape), dtype=feature["dtype"],
                chunks=(_frame_chunk(feature), *shape),
            )
        group.create_array(f"{layout.META}/{layout.EPISODE_ENDS}", shape=(0,), dtype=np.int64,
                           chunks=(META_CHUNK,), fill_value=0)
        for name, (dtype, fill) in layout.EPISODE_META.items():
            group.create_array(f"{layout.META}/{name}", shape=(0,), dtype=dtype, chunks=(META_CHUNK,),
                               fill_value=fill)
        # Attributes last: a store without its format attribute is not mistaken for a valid one.
        group.attrs.update(attrs)
    except OSError as exc:
        raise RobodreamError(layout.describe_os_error(exc, location)) from None
    return group


@dataclass
class RepairReport:
    """What `repair_store` found: committed episodes/frames and what it dropped."""

    episodes: int
    frames: int
    dropped_frames: int
    dropped_meta_entries: int

    @property
    def changed(self) -> bool:
        return self.dropped_frames > 0 or self.dropped_meta_entries > 0


def _group_arrays(group: zarr.Group, location: str | os.PathLike
                  ) -> tuple[dict[str, zarr.Array], dict[str, zarr.Array], zarr.Array]:
    """The data arrays (one per feature), per-episode metadata and episode_ends; one line if any is damaged."""
    data = {key: open_array(group, f"{layout.DATA}/{key}", location) for key in group.attrs["features"]}
    meta = {name: open_array(group, f"{layout.META}/{name}", location) for name in layout.EPISODE_META}
    ends = open_array(group, f"{layout.META}/{layout.EPISODE_ENDS}", location)
    return data, meta, ends


def _episode_task_array(group: zarr.Group) -> zarr.Array | None:
    """meta/episode_task of a store that mixes tasks, else None. It is not part of the commit check: a store
    appended to by a robodream that does not know it keeps its episodes (readers use the `task` attribute)."""
    name = f"{layout.META}/{layout.EPISODE_TASK}"
    return group[name] if layout.EPISODE_TASK in group[layout.META] else None


def _repair_group(group: zarr.Group, location: str | os.PathLike) -> RepairReport:
    data, meta, ends_array = _group_arrays(group, location)
    ends = read_episode_ends(ends_array, location)
    count = layout.committed_episode_ends(
        ends, [a.shape[0] for a in data.values()], [a.shape[0] for a in meta.values()]
    )
    frames = int(ends[count - 1]) if count else 0
    dropped_frames = max((a.shape[0] - frames for a in data.values()), default=0)
    dropped_meta = max([ends_array.shape[0] - count] + [a.shape[0] - count for a in meta.values()])
    # Shrink in the reverse order of an append: episode_ends first, so no step leaves a committed
    # episode pointing at frames that are gone.
    if ends_array.shape[0] != count:
        ends_array.resize((count,))
    for arr in meta.values():
        if arr.shape[0] != count:
            arr.resize((count,))
    tasks = _episode_task_array(group)
    if tasks is not None and tasks.shape[0] > count:
        tasks.resize((count,))
    for arr in data.values():
        if arr.shape[0] != frames:
            arr.resize((frames, *arr.shape[1:]))
    return RepairReport(count, frames, dropped_frames, dropped_meta)


def repair_store(location: str | os.PathLike, storage_options: dict | None = None) -> RepairReport:
    """Drop uncommitted trailing frames and metadata a crash left behind. Committed episodes are untouched.

    Takes the store's writer lock: the trailing frames of a writer at work are not a crash's leftovers."""
    lock = outputs.lock_output(location)
    try:
        group = layout.open_group(location, read_only=False, storage_options=storage_options)
        return _repair_group(group, location)
    except OSError as exc:
        raise RobodreamError(layout.describe_os_error(exc, location)) from None
    finally:
        lock.release()


def open_recording(location: str | os.PathLike, features: dict[str, Feature], *, resume: bool, recorder: str,
                   fix: str, check: Callable[[EpisodeWriter], None] | None = None,
                   **create: Any) -> tuple[EpisodeWriter, bool]:
    """The store a recorder (collect, teleop, deploy, record-ros) adds episodes to, and whether it was created.

    With `resume` and a store at `location`: that store, after `check(writer)` (e.g. the recorded config is
    this run's) and a check that it records exactly `features` (else one line naming `recorder` and `fix`).
    Otherwise a new store: `create_store(location, features=features, **create)` (fps, robot_type, task,
    cameras, extra_attrs, overwrite), under the output rule."""
    if resume and layout.store_exists(location):
        writer = EpisodeWriter.open(location)
        try:
            if check is not None:
                check(writer)
        except BaseException:
            writer.close(compute_stats=False)
            raise
        writer.check_features(features, recorder, fix)
        return writer, False
    return create_store(location, features=features, **create), True


class EpisodeWriter:
    """Appends whole episodes to a store. Open with `create_store` or `EpisodeWriter.open`."""

    def __init__(self, group: zarr.Group, location: str | os.PathLike, lock: outputs.OutputLock | None = None):
        self.group = group
        self.location = str(location)
        # The store's writer lock, released by `close` (or when the writer is garbage-collected).
        self._lock = lock or outputs.OutputLock(None)
        self._release = weakref.finalize(self, self._lock.release)
        self.features: dict[str, Feature] = dict(group.attrs["features"])
        self._data, self._meta, self._ends = _group_arrays(group, location)
        self._tasks = _episode_task_array(group)
        self._episode_ends = [int(e) for e in read_episode_ends(self._ends, location)]

    @classmethod
    def open(cls, location: str | os.PathLike, storage_options: dict | None = None) -> EpisodeWriter:
        """Open an existing store for appending (taking its writer lock), first dropping any uncommitted
        trailing frames."""
        lock = outputs.lock_output(location)
        try:
            if lock.key is not None:  # the lock holder owns the temporary siblings: those left are a dead run's
                outputs.remove_stale_temporaries(layout.local_path(location))
            repair_store(location, storage_options)
            return cls(layout.open_group(location, read_only=False, storage_options=storage_options), location, lock)
        except BaseException:
            lock.release()
            raise

    def check_features(self, features: dict[str, Feature], recorder: str, fix: str) -> None:
        """Refuse (closing this writer) a store that records other features than `features` (`recorder` names
        what records them, `fix` what to do instead, in the one-line error)."""
        stored = {k: v for k, v in self.features.items() if k != layout.TIMESTAMP}
        if stored != features:
            self.close(compute_stats=False)
            raise RobodreamError(f"cannot add to {self.location}: it holds {sorted(stored)} with other shapes or "
                                 f"names than {recorder} records; {fix}")

    def keep_episode_tasks(self, task: str) -> None:
        """Make this store one of mixed tasks: meta/episode_task holds every episode's task (the committed ones get
        the current `task` attribute), and the attribute becomes ``task`` (a summary such as "a | b")."""
        if self._tasks is None:
            try:
                current = str(self.attrs.get("task", ""))
                self._tasks = self.group.create_array(f"{layout.META}/{layout.EPISODE_TASK}", dtype=str,
                                                      shape=(self.num_episodes,), chunks=(META_CHUNK,), fill_value="")
                if self.num_episodes:
                    self._tasks[:] = np.asarray([current] * self.num_episodes)
            except OSError as exc:
                raise RobodreamError(layout.describe_os_error(exc, self.location)) from None
        self.group.attrs["task"] = task

    @property
    def attrs(self) -> dict[str, Any]:
        return self.group.attrs.asdict()

    @property
    def num_episodes(self) -> int:
        return len(self._episode_ends)

    @property
    def num_frames(self) -> int:
        return self._episode_ends[-1] if self._episode_ends else 0

    def meta(self, name: str) -> np.ndarray:
        """Committed values of one per-episode metadata array, e.g. "episode_seed"."""
        return self._meta[name][: self.num_episodes]

    def append_episode(
        self,
        data: dict[str, np.ndarray],
        *,
        source: str,
        success: bool | None = None,
        seed: int = -1,
        origin: str = "",
        task: str | None = None,
    ) -> int:
        """Validate, write and commit one episode; returns its index.

        `data` maps every feature key of the store to a (T, *shape) array. If "timestamp" is missing it is
        filled as frame_index / fps. `success` None means the outcome is unknown (layout.UNKNOWN). `task` is the
        episode's own task in a store of mixed tasks (`keep_episode_tasks`); a store of one task refuses another.
        Nothing is written unless the whole episode is valid.
        """
        arrays = self._validate(data, source)
        store_task = str(self.attrs.get("task", ""))
        if self._tasks is None and task is not None and task != store_task:
            raise RobodreamError(f"episode of task {task!r} cannot go into {self.location}, a store of task "
                                 f"{store_task!r}: merge with mixed_tasks=true to keep a task per episode")
        length = next(iter(arrays.values())).shape[0]
        start, index = self.num_frames, self.num_episodes
        try:
            for key, values in arrays.items():
                target = self._data[key]
                target.resize((start + length, *target.shape[1:]))
                target[start : start + length] = values
            outcome = (bool(success) if self._meta["episode_success"].dtype == bool  # a store from before UNKNOWN
                       else layout.outcome_code(success))
            for name, value in (("episode_source", source), ("episode_success", outcome),
                                ("episode_seed", int(seed)), ("episode_origin", str(origin))):
                self._meta[name].resize((index + 1,))
                self._meta[name][index] = value
            if self._tasks is not None:
                self._tasks.resize((index + 1,))
                self._tasks[index] = store_task if task is None else task
            # The commit point: the episode exists once episode_ends holds its end.
            self._ends.resize((index + 1,))
            self._ends[index] = start + length
        except OSError as exc:
            self._roll_back()
            raise RobodreamError(layout.describe_os_error(exc, self.location)) from None
        self._episode_ends.append(start + length)
        return index

    def _roll_back(self) -> None:
        """Best effort after a failed write: drop the partial episode now rather than at the next open."""
        try:
            _repair_group(self.group, self.location)
        except OSError:
            pass  # still safe: readers ignore uncommitted frames and the next append repairs them
        self._data, self._meta, self._ends = _group_arrays(self.group, self.location)
        self._tasks = _episode_task_array(self.group)

    def _validate(self, data: dict[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
        if source not in layout.SOURCES:
            raise RobodreamError(f"episode source must be one of {', '.join(layout.SOURCES)}; got {source!r}")
        data = dict(data)
        if layout.TIMESTAMP not in data and layout.TIMESTAMP in self.features:
            length = len(next(iter(data.values()))) if data else 0
            data[layout.TIMESTAMP] = np.arange(length, dtype=np.float32) / float(self.group.attrs["fps"])
        missing = sorted(set(self.features) - set(data))
        if missing:
            raise RobodreamError(f"episode is missing {missing}; the store at {self.location} needs "
                                 f"{sorted(self.features)}")
        unknown = sorted(set(data) - set(self.features))
        if unknown:
            raise RobodreamError(f"episode has keys {unknown} that the store at {self.location} does not hold "
                                 f"(it holds {sorted(self.features)})")
        lengths = {key: len(np.asarray(values)) for key, values in data.items()}
        if len(set(lengths.values())) != 1:
            raise RobodreamError(f"episode arrays differ in length: {lengths}")
        if next(iter(lengths.values())) == 0:
            raise RobodreamError("episode is empty (0 frames); nothing to append")
        arrays = {}
        for key, feature in self.features.items():
            values = np.asarray(data[key])
            expected = tuple(feature["shape"])
            if values.shape[1:] != expected:
                raise RobodreamError(f"{key!r} has per-frame shape {values.shape[1:]} but the store at "
                                     f"{self.location} holds {expected}")
            dtype = np.dtype(feature["dtype"])
            if dtype.kind in "ui" and values.dtype.kind == "f":
                raise RobodreamError(f"{key!r} is {values.dtype} but the store holds {dtype}: convert it first "
                                     "(images are uint8 0-255)")
            if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
                bad = int(np.argwhere(~np.isfinite(values.reshape(len(values), -1)).all(axis=1))[0, 0])
                raise RobodreamError(f"{key!r} contains NaN or inf (first at frame {bad}); refusing to store it")
            arrays[key] = values.astype(dtype, copy=False)
        return arrays

    def update_stats(self) -> dict[str, Any]:
        """Compute normalisation stats over all committed frames and store them in the group attributes."""
        stats = compute_stats({k: a for k, a in self._data.items()}, self.num_frames, self.features)
        try:
            self.group.attrs["stats"] = _as_json(stats)
        except OSError as exc:
            raise RobodreamError(layout.describe_os_error(exc, self.location)) from None
        return stats

    def close(self, compute_stats: bool = True) -> None:
        """Finish writing (by default storing fresh normalisation stats) and release the writer lock."""
        try:
            if compute_stats and self.num_frames:
                self.update_stats()
        finally:
            self._release()
