"""Reading episode stores: committed episodes only, from RAM when the store fits, else from Zarr chunks."""

from __future__ import annotations

import os
from typing import Any, Literal

import numpy as np
import zarr

from robodream.datasets import layout
from robodream.datasets.integrity import CheckedArray, first_nonfinite_frame, open_array, read_episode_ends
from robodream.datasets.stats import compute_stats
from robodream.errors import RobodreamError
from robodream.features import Feature, image_keys

CacheMode = Literal["auto", "ram", "disk"]
# "auto" loads the store into RAM when it needs at most this share of the memory available now.
DEFAULT_RAM_FRACTION = 0.5


def available_memory_bytes() -> int:
    """Memory the OS reports as available (MemAvailable), or physical memory when that is unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _all_finite(stats: dict[str, Any]) -> bool:
    """Whether stored stats hold only finite numbers (stats written by another tool over NaN data do not; the
    data are checked first, so recomputing them gives finite ones)."""
    try:
        return all(np.isfinite(np.asarray(values, np.float64)).all()
                   for feature in stats.values() for values in feature.values())
    except (TypeError, ValueError, AttributeError):
        return False


def parse_episode_selection(text: str, num_episodes: int) -> list[int]:
    """'0-3' -> [0, 1, 2, 3]; '0,2,5-6' -> [0, 2, 5, 6]; 'all' -> every episode. Ranges are inclusive."""
    if text.strip() == "all":
        return list(range(num_episodes))
    selected: list[int] = []
    for part in text.split(","):
        first, sep, last = part.strip().partition("-")
        try:
            lo = int(first)
            hi = int(last) if sep else lo
        except ValueError:
            raise RobodreamError(f"bad episode selection {text!r}: use e.g. 0-3 or 0,2,5-7") from None
        if lo > hi:
            raise RobodreamError(f"bad episode range {part!r}: start is after end")
        selected.extend(range(lo, hi + 1))
    out_of_range = [i for i in selected if not 0 <= i < num_episodes]
    if out_of_range:
        raise RobodreamError(f"episodes {out_of_range} do not exist: the store holds {num_episodes} "
                             f"(0-{num_episodes - 1})")
    return list(dict.fromkeys(selected))


class EpisodeStore:
    """A read-only view of the committed episodes of a store.

    Frames past the last committed episode (left by a crash) are ignored here and reported in
    `uncommitted_frames`; `robodream repair` or the next append drops them.
    """

    def __init__(self, group: zarr.Group, location: str | os.PathLike, cache: CacheMode = "auto",
                 max_ram_bytes: int | None = None):
        if cache not in ("auto", "ram", "disk"):
            raise RobodreamError(f"cache must be 'auto', 'ram' or 'disk', got {cache!r}")
        self.group = group
        self.location = str(location)
        self.attrs: dict[str, Any] = group.attrs.asdict()
        self.features: dict[str, Feature] = self.attrs["features"]
        # Every read goes through CheckedArray: a damaged chunk is reported with the store, array and frames.
        self._zarr_data = {key: CheckedArray(open_array(group, f"{layout.DATA}/{key}", location), location)
                           for key in self.features}
        meta = {name: open_array(group, f"{layout.META}/{name}", location) for name in layout.EPISODE_META}
        ends = read_episode_ends(open_array(group, f"{layout.META}/{layout.EPISODE_ENDS}", location), location)
        count = layout.committed_episode_ends(
            ends, [a.shape[0] for a in self._zarr_data.values()], [a.shape[0] for a in meta.values()]
        )
        self.episode_ends = ends[:count].astype(np.int64)
        self.episode_starts = np.concatenate([[0], self.episode_ends[:-1]]).astype(np.int64)
        self._meta = {name: CheckedArray(arr, location)[:count] for name, arr in meta.items()}
        self._finite: set[str] = set()  # float features already checked for NaN/inf
        self.uncommitted_frames = max((a.shape[0] for a in self._zarr_data.values()), default=0) - self.num_frames
        self.in_ram = self._decide_ram(cache, max_ram_bytes)
        self._data: dict[str, Any] = (
            {key: arr[: self.num_frames] for key, arr in self._zarr_data.items()} if self.in_ram
            else self._zarr_data
        )

    @classmethod
    def open(cls, location: str | os.PathLike, *, cache: CacheMode = "auto", max_ram_bytes: int | None = None,
             storage_options: dict | None = None) -> EpisodeStore:
        """Open a store by local path or fsspec URL for reading."""
        group = layout.open_group(location, read_only=True, storage_options=storage_options)
        return cls(group, location, cache=cache, max_ram_bytes=max_ram_bytes)

    def _decide_ram(self, cache: CacheMode, max_ram_bytes: int | None) -> bool:
        if cache != "auto":
            return cache == "ram"
        budget = max_ram_bytes if max_ram_bytes is not None else DEFAULT_RAM_FRACTION * available_memory_bytes()
        return self.nbytes <= budget

    # -- shape of the store -------------------------------------------------------------------------
    @property
    def fps(self) -> float:
        return float(self.attrs["fps"])

    @property
    def task(self) -> str:
        return str(self.attrs.get("task", ""))

    @property
    def robot_type(self) -> str:
        return str(self.attrs.get("robot_type", ""))

    @property
    def cameras(self) -> dict[str, dict]:
        return dict(self.attrs.get("cameras", {}))

    @property
    def keys(self) -> list[str]:
        return list(self.features)

    @property
    def image_keys(self) -> list[str]:
        return image_keys(self.features)

    @property
    def num_episodes(self) -> int:
        return len(self.episode_ends)

    @property
    def num_frames(self) -> int:
        return int(self.episode_ends[-1]) if len(self.episode_ends) else 0

    @property
    def episode_lengths(self) -> np.ndarray:
        return self.episode_ends - self.episode_starts

    @property
    def nbytes(self) -> int:
        """Uncompressed size of the committed frames."""
        return sum(self.num_frames * int(np.prod(a.shape[1:], dtype=np.int64)) * a.dtype.itemsize
                   for a in self._zarr_data.values())

    # -- reading ------------------------------------------------------------------------------------
    def meta(self, name: str) -> np.ndarray:
        """Per-episode metadata of committed episodes: episode_source, episode_success, episode_seed, ..."""
        if name == layout.EPISODE_ENDS:
            return self.episode_ends
        if name not in self._meta:
            raise RobodreamError(f"unknown episode metadata {name!r}; known: {sorted(self._meta)}")
        return np.asarray(self._meta[name])

    def episode_tasks(self) -> list[str]:
        """Every committed episode's task: meta/episode_task in stores that mix tasks (merge mixed_tasks=true),
        else (and for entries it lacks) the store's `task` attribute."""
        if not hasattr(self, "_episode_tasks"):
            tasks: list[str] = []
            if layout.EPISODE_TASK in self.group[layout.META]:
                array = open_array(self.group, f"{layout.META}/{layout.EPISODE_TASK}", self.location)
                tasks = [str(t) for t in CheckedArray(array, self.location)[: self.num_episodes]]
            tasks += [""] * (self.num_episodes - len(tasks))
            self._episode_tasks = [t or self.task for t in tasks]
        return list(self._episode_tasks)

    @property
    def mixed_tasks(self) -> bool:
        """Whether the store keeps a task per episode (meta/episode_task)."""
        return layout.EPISODE_TASK in self.group[layout.META]

    def outcomes(self) -> np.ndarray:
        """Per-episode outcome codes: layout.SUCCESS (1), FAILURE (0) or UNKNOWN (-1), whatever the store's encoding."""
        return layout.outcome_codes(self.meta("episode_success"))

    def _check_episode(self, index: int) -> int:
        if not -self.num_episodes <= index < self.num_episodes:
            raise RobodreamError(f"episode {index} does not exist: {self.location} holds {self.num_episodes} episodes")
        return index % self.num_episodes

    def _check_key(self, key: str) -> None:
        if key not in self._data:
            raise RobodreamError(f"{self.location} has no feature {key!r}; it holds {sorted(self.features)}")

    def episode(self, index: int, keys: list[str] | None = None) -> dict[str, np.ndarray]:
        """All frames of one committed episode, for the given keys (default: every feature)."""
        index = self._check_episode(index)
        start, end = int(self.episode_starts[index]), int(self.episode_ends[index])
        result = {}
        for key in keys or self.keys:
            self._check_key(key)
            result[key] = np.asarray(self._data[key][start:end])
        return result

    def gather(self, key: str, frame_indices: np.ndarray) -> np.ndarray:
        """Frames at arbitrary global indices (any shape of index array), from RAM or Zarr."""
        self._check_key(key)
        flat = np.asarray(frame_indices, dtype=np.int64).reshape(-1)
        array = self._data[key]
        if self.in_ram:
            values = array[flat]
        else:
            # Zarr reads whole chunks; reading the sorted unique frames once and re-expanding avoids
            # decoding a chunk once per window.
            unique, inverse = np.unique(flat, return_inverse=True)
            values = array.get_orthogonal_selection((unique,))[inverse]
        return values.reshape(*np.shape(frame_indices), *values.shape[1:])

    def episode_meta(self, index: int) -> dict[str, Any]:
        index = self._check_episode(index)
        return {
            "index": index,
            "length": int(self.episode_lengths[index]),
            "source": str(self._meta["episode_source"][index]),
            "success": {layout.SUCCESS: True, layout.FAILURE: False}.get(  # None: unknown
                int(layout.outcome_codes(self._meta["episode_success"][index : index + 1])[0])),
            "seed": int(self._meta["episode_seed"][index]),
            "origin": str(self._meta["episode_origin"][index]),
        }

    def stats(self) -> dict[str, Any]:
        """Normalisation stats: those stored in the attributes when they cover the committed frames,
        else computed now (not saved: this view is read-only).

        Everything that trains or normalises from a store asks for its stats first, so this is where the float
        features are checked for NaN/inf (`check_finite`): a model trained on them learns NaN weights."""
        self.check_finite()
        stored = self.attrs.get("stats")
        if stored and stored.get("num_frames") == self.num_frames and _all_finite(stored.get("features", {})):
            return stored
        return compute_stats(self._data, self.num_frames, self.features)

    def check_finite(self, keys: list[str] | None = None) -> None:
        """Refuse NaN or inf in the float features `keys` (default: all), naming the store, the array and the
        first bad episode and frame. Each feature is read once, a chunk at a time, and then remembered.

        Robodream's writers refuse non-finite values, so these come from a store edited or written by other
        tools (or damaged): the fix is in the data, not in training.
        """
        for key in keys or self.keys:
            self._check_key(key)
            if key in self._finite or np.dtype(self.features[key]["dtype"]).kind != "f":
                continue
            frame = first_nonfinite_frame(self._data[key], self.num_frames)
            if frame is not None:
                episode = int(np.searchsorted(self.episode_ends, frame, side="right"))
                raise RobodreamError(
                    f"{self.location}: {layout.DATA}/{key} holds NaN or inf in episode {episode} at frame "
                    f"{frame - int(self.episode_starts[episode])} (frame {frame} of the store); a model trained on "
                    "it would learn NaN weights: fix those values, or record the episode again")
            self._finite.add(key)
