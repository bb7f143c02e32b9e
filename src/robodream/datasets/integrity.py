"""Reading a store's arrays at one boundary, so that damage is reported once, as one line.

Zarr reports a cut chunk file as "Zstd decompression error", a garbage ``zarr.json`` as a JSON error and a
missing array as a KeyError, none of them naming the store or the array. Every read of an episode store goes
through `open_array` (metadata) and `CheckedArray` (chunks), which turn those into a `RobodreamError` naming
the store, the array and the damaged chunk with its frames. `first_nonfinite_frame` finds NaN/inf in a float
feature chunk by chunk, before a model trains on it.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import zarr
import zarr.errors

from robodream.errors import RobodreamError

# What zarr and its codecs raise for damaged bytes or metadata (numcodecs: RuntimeError; json: ValueError;
# zarr: BaseZarrError, a ValueError; a missing node: KeyError; an unreadable file: OSError).
READ_ERRORS = (RuntimeError, ValueError, TypeError, KeyError, OSError, zarr.errors.BaseZarrError)
RESTORE = "restore the store from a copy, or record it again"
# NaN/inf scans read float arrays in blocks of about this many frames (whole chunks).
SCAN_BLOCK_FRAMES = 1 << 16


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def open_array(group: zarr.Group, path: str, location: str | os.PathLike) -> zarr.Array:
    """`group[path]` as a zarr Array, or one line saying which array of which store is missing or unreadable."""
    try:
        node = group[path]
    except KeyError:
        raise RobodreamError(f"{location} has no {path} array: the store is damaged; {RESTORE}") from None
    except READ_ERRORS as exc:
        raise RobodreamError(f"{location}: the metadata of {path} ({path}/zarr.json) is unreadable ({_reason(exc)}): "
                             f"the store is damaged; {RESTORE}") from None
    if not isinstance(node, zarr.Array):
        raise RobodreamError(f"{location}: {path} is a group, not an array: the store is damaged; {RESTORE}")
    return node


def _frame_span(selection: Any, length: int) -> tuple[int, int]:
    """The frames [start, stop) that a selection along the first axis touches."""
    first = selection[0] if isinstance(selection, tuple) and selection else selection
    if isinstance(first, slice):
        start, stop, _ = first.indices(length)
        return start, max(start, stop)
    if isinstance(first, (int, np.integer)):
        index = int(first) % length if length else 0
        return index, index + 1
    indices = np.asarray(first)
    if indices.dtype.kind in "iu" and indices.size:
        return int(indices.min()), int(indices.max()) + 1
    return 0, length


class CheckedArray:
    """A read-only zarr array whose failed reads name the store, the array and the damaged chunk (with its
    frames). Supports what the readers use: basic indexing along time and `get_orthogonal_selection`."""

    def __init__(self, array: zarr.Array, location: str | os.PathLike):
        self.array = array
        self.location = str(location)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    @property
    def chunks(self) -> tuple[int, ...]:
        return self.array.chunks

    def __len__(self) -> int:
        return self.array.shape[0]

    def __getitem__(self, selection: Any) -> np.ndarray:
        try:
            return self.array[selection]
        except READ_ERRORS as exc:
            raise RobodreamError(self._describe(selection, exc)) from None

    def get_orthogonal_selection(self, selection: Any) -> np.ndarray:
        try:
            return self.array.get_orthogonal_selection(selection)
        except READ_ERRORS as exc:
            raise RobodreamError(self._describe(selection, exc)) from None

    def _describe(self, selection: Any, exc: BaseException) -> str:
        """Re-read the selected frames chunk by chunk to name the first chunk that fails."""
        length = self.array.shape[0]
        start, stop = _frame_span(selection, length)
        unit = "frames" if self.array.path.startswith("data/") else "entries"
        size = self.array.chunks[0]
        for chunk in range(start // size, -(-stop // size)):
            first, last = chunk * size, min((chunk + 1) * size, length)
            try:
                self.array[first:last]
            except READ_ERRORS as chunk_exc:
                key = self.array.metadata.encode_chunk_key((chunk,) + (0,) * (self.array.ndim - 1))
                return (f"{self.location}: {self.array.path} chunk {key} ({unit} {first}-{last - 1}) is unreadable "
                        f"({_reason(chunk_exc)}): the store is damaged; {RESTORE}")
        return (f"{self.location}: cannot read {self.array.path} {unit} {start}-{max(start, stop - 1)} "
                f"({_reason(exc)}): the store is damaged; {RESTORE}")


def read_episode_ends(array: zarr.Array, location: str | os.PathLike) -> np.ndarray:
    """All of meta/episode_ends, refusing a store whose chunk files are gone (zarr would read them as zeros,
    i.e. no committed episodes, and a repair would then drop every frame).

    Every entry but the newest is non-zero once written, so each chunk holding one of them must exist; the
    newest may legitimately be unwritten (a crash between growing the array and committing the episode).
    """
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise RobodreamError(f"{location}: {array.path} is {array.dtype} of shape {array.shape}, not a list of "
                             f"integer frame counts: the store is damaged; {RESTORE}")
    ends = CheckedArray(array, location)[:]
    needed = -(-(len(ends) - 1) // array.chunks[0]) if len(ends) > 1 else 0
    if needed and array.nchunks_initialized < needed:
        raise RobodreamError(f"{location}: {array.path} lists {len(ends)} episodes but its chunk files are missing "
                             f"({array.nchunks_initialized} of {needed}): the store is damaged; {RESTORE}")
    return ends


def first_nonfinite_frame(array: Any, num_frames: int) -> int | None:
    """The first of the first `num_frames` frames of a float array holding NaN or inf (None if all are finite),
    reading whole chunks at a time."""
    chunk = getattr(array, "chunks", (SCAN_BLOCK_FRAMES,))[0]
    block = chunk * max(1, SCAN_BLOCK_FRAMES // chunk)
    for start in range(0, num_frames, block):
        values = np.asarray(array[start : min(num_frames, start + block)])
        finite = np.isfinite(values.reshape(len(values), -1)).all(axis=1)
        if not finite.all():
            return start + int(np.argmin(finite))
    return None
