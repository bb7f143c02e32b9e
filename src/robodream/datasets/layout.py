"""The on-disk layout of an episode store (design.md §2) and how to open one from a path or URL.

    <name>.zarr/                      group attributes: format, version, fps, robot_type, task, features, cameras
      data/<feature key>              (T, ...) per-frame arrays, chunked along time
      meta/episode_ends               (E,) int64, cumulative frame counts; grown LAST = the commit point
      meta/episode_source, episode_success, episode_seed, episode_origin   (E,) per-episode metadata
      meta/episode_task               (E,) str, optional: only in stores that mix tasks (see EPISODE_TASK)
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import zarr
import zarr.storage

from robodream.errors import RobodreamError

FORMAT = "robodream.episodes"
FORMAT_VERSION = 2  # 2: meta/episode_success is int8 with -1 = unknown (version 1: bool); optional meta/episode_task

DATA = "data"
META = "meta"
EPISODE_ENDS = "episode_ends"
# Episode outcomes in meta/episode_success: success, failure, and unknown (imported recordings that do not say).
# Stores written before unknown existed hold bools (True/False); they are read as 1/0, and appends to them can
# only store unknown as False, as they always did.
SUCCESS, FAILURE, UNKNOWN = 1, 0, -1
OUTCOMES = {SUCCESS: "success", FAILURE: "failure", UNKNOWN: "unknown"}
# Per-episode metadata arrays besides episode_ends, with their dtype and the value meaning "unknown".
EPISODE_META: dict[str, tuple[Any, Any]] = {
    "episode_source": (str, ""),
    "episode_success": (np.int8, UNKNOWN),
    "episode_seed": (np.int64, -1),
    "episode_origin": (str, ""),
}
SOURCES = ("sim", "teleop", "import", "synthetic", "deploy")
# Optional per-episode task (a string per episode), present only in stores that mix tasks (`merge mixed_tasks=true`):
# readers fall back to the store's `task` attribute where it is absent. Like LeRobot's task_index per episode.
EPISODE_TASK = "episode_task"

# Per-frame keys every store carries besides the robot's features.
TIMESTAMP = "timestamp"


def outcome_codes(values: np.ndarray) -> np.ndarray:
    """meta/episode_success as int8 codes (SUCCESS, FAILURE, UNKNOWN), from either encoding (bool or int8)."""
    values = np.asarray(values)
    return values.astype(np.int8) if values.dtype == bool else values.astype(np.int8, copy=False)


def outcome_code(success: bool | None) -> int:
    """The code of an outcome given as True, False or None (unknown)."""
    return UNKNOWN if success is None else SUCCESS if success else FAILURE


def is_url(location: str | os.PathLike) -> bool:
    return "://" in str(location) and not str(location).startswith("file://")


def local_path(location: str | os.PathLike) -> Path:
    text = str(location)
    return Path(text[len("file://"):] if text.startswith("file://") else text)


def make_zarr_store(location: str | os.PathLike, read_only: bool, storage_options: dict | None = None):
    """A zarr Store for a local path (or file:// URL) or any fsspec URL (s3://, gs://, memory://, ...)."""
    if is_url(location):
        return zarr.storage.FsspecStore.from_url(
            str(location), read_only=read_only, storage_options=storage_options or None
        )
    return zarr.storage.LocalStore(local_path(location), read_only=read_only)


def store_exists(location: str | os.PathLike, storage_options: dict | None = None) -> bool:
    """Whether a zarr group (any format) exists at `location`."""
    if not is_url(location):
        path = local_path(location)
        return (path / "zarr.json").exists() or (path / ".zgroup").exists()
    try:
        zarr.open_group(make_zarr_store(location, True, storage_options), mode="r")
        return True
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, KeyError):
        return False


def store_size_bytes(location: str | os.PathLike) -> int:
    """Bytes on disk of a local store (0 for URLs and missing stores)."""
    if is_url(location):
        return 0
    path = local_path(location)
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def open_group(location: str | os.PathLike, read_only: bool, storage_options: dict | None = None) -> zarr.Group:
    """Open the root group of an existing episode store, checking its format and version."""
    if not is_url(location) and not local_path(location).exists():
        raise RobodreamError(f"no episode store at {location}: check the path, or record one with `robodream collect`")
    try:
        group = zarr.open_group(make_zarr_store(location, read_only, storage_options), mode="r" if read_only else "r+")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
        raise RobodreamError(f"no zarr group at {location}: is it an episode store? ({exc})") from None
    except (ValueError, TypeError, KeyError, zarr.errors.BaseZarrError) as exc:  # a garbage zarr.json
        raise RobodreamError(f"{location}: its zarr.json is unreadable ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}): the store is damaged") from None
    check_format(group, location)
    return group


def check_format(group: zarr.Group, location: str | os.PathLike) -> None:
    """Raise a RobodreamError saying what is wrong if `group` is not a store this version can read."""
    if group.metadata.zarr_format != 3:
        raise RobodreamError(
            f"{location} is a zarr v{group.metadata.zarr_format} group, not a robodream episode store (zarr v3); "
            "if it is a Diffusion Policy replay buffer, import it with `robodream import-zarr`"
        )
    attrs = group.attrs.asdict()
    fmt = attrs.get("format")
    if fmt != FORMAT:
        found = f"format {fmt!r}" if fmt is not None else "no 'format' attribute"
        raise RobodreamError(f"{location} is not a robodream episode store ({found}, expected {FORMAT!r})")
    version = attrs.get("version")
    if not isinstance(version, int) or version < 1:
        raise RobodreamError(f"{location} has an invalid store version {version!r}; expected an integer >= 1")
    if version > FORMAT_VERSION:
        raise RobodreamError(
            f"{location} is store version {version}, newer than this robodream reads ({FORMAT_VERSION}): "
            "upgrade robodream"
        )
    for key in ("fps", "features"):
        if key not in attrs:
            raise RobodreamError(f"{location} is missing the '{key}' attribute: the store is damaged")


def committed_episode_ends(ends: np.ndarray, data_lengths: list[int], meta_lengths: list[int]) -> int:
    """How many entries of meta/episode_ends are committed.

    An entry counts only if it is larger than the previous one (an append that crashed between growing
    episode_ends and writing its value leaves the fill value 0 there), fits inside every data array, and
    every per-episode metadata array already holds its entry (they are written before the commit).
    """
    limit = min(data_lengths) if data_lengths else 0
    count = 0
    previous = 0
    for i, end in enumerate(ends):
        if end <= previous or end > limit or any(length <= i for length in meta_lengths):
            break
        previous = int(end)
        count += 1
    return count


def _blocking_file(path: Path) -> Path | None:
    """The file (not folder) at `path` or at its nearest existing ancestor, which stops a folder being made."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


def describe_os_error(exc: OSError, location: str | os.PathLike,
                      note: str = "Committed episodes are intact.") -> str:
    """One line explaining a failed write, with how to fix it (and `note`: what is still safe)."""
    tail = f" {note}" if note else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return (f"cannot write to {location}: {exc.strerror} (disk full or file size limit); free space or "
                f"write to another location.{tail}")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"cannot write to {location}: {exc.strerror}; choose a writable location or fix its "
                f"permissions.{tail}")
    blocker = _blocking_file(local_path(location)) if not is_url(location) else None
    if exc.errno in (errno.ENOTDIR, errno.EEXIST) and blocker is not None:
        return f"cannot write to {location}: {blocker} is a file, not a folder; choose another location.{tail}"
    return f"cannot write to {location}: {exc}.{tail}"


def check_writable_dir(directory: str | os.PathLike) -> Path:
    """Create the local folder `directory` if needed and check that files can be created in it, so that a
    read-only or mistyped `out=` is one line before a command spends minutes on results it cannot save."""
    path = local_path(directory)
    try:
        path.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".robodream-write-test-", dir=path)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise RobodreamError(describe_os_error(exc, path, note="")) from None
    return path
