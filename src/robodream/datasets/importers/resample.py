"""Resampling time-stamped streams onto the store's frame clock, and reporting what that cost.

Sensors and command topics arrive at their own rates (joint states at 100 Hz, a camera at 30 Hz, commands at
10 Hz, with jitter and gaps); a store holds one frame per 1/fps. Every stream of an episode is sampled at the
same frame times ``t_k = t_start + k / fps``:

- ``nearest``: the message closest in time (images always use this: blending frames makes ghosts);
- ``linear``: interpolation between the two messages around ``t_k`` (joint positions, continuous signals);
- ``hold``: the latest message at or before ``t_k`` (commands: a controller keeps executing the last command
  until a new one arrives, so that is what the robot was doing at ``t_k``).

The episode spans only the time every stream covers (``coverage``), so no value is ever extrapolated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robodream.errors import RobodreamError

METHODS = ("nearest", "linear", "hold")


def check_method(method: str, where: str) -> str:
    if method not in METHODS:
        raise RobodreamError(f"{where}={method!r}: choose one of {', '.join(METHODS)}")
    return method


def check_increasing(times: np.ndarray, what: str, hint: str = "") -> None:
    """Raise a RobodreamError naming the first message whose time is earlier than the one before it."""
    if len(times) < 2:
        return
    backwards = np.flatnonzero(np.diff(times) < 0)
    if len(backwards):
        i = int(backwards[0]) + 1
        raise RobodreamError(f"{what}: timestamps go backwards at message {i} ({times[i]:.6f} s after "
                             f"{times[i - 1]:.6f} s); expected non-decreasing times{hint}")


def coverage(times: np.ndarray, method: str) -> tuple[float, float]:
    """The time span a stream can be sampled in without extrapolating (a held command holds forever)."""
    return float(times[0]), (np.inf if method == "hold" else float(times[-1]))


def frame_times(start: float, end: float, fps: float) -> np.ndarray:
    """``start, start + 1/fps, ...`` up to ``end`` (inclusive, with a little slack for float rounding)."""
    if end < start:
        return np.zeros(0)
    count = int(np.floor((end - start) * fps + 1e-6)) + 1
    return start + np.arange(count) / fps


def source_indices(times: np.ndarray, grid: np.ndarray, method: str) -> np.ndarray:
    """For every grid time, the index of the message it takes its value from (nearest / latest)."""
    after = np.searchsorted(times, grid, side="right")  # first message later than t
    latest = np.clip(after - 1, 0, len(times) - 1)
    if method == "hold":
        return latest
    following = np.clip(after, 0, len(times) - 1)
    take_following = np.abs(times[following] - grid) < np.abs(grid - times[latest])
    return np.where(take_following, following, latest)


def resample(times: np.ndarray, values: np.ndarray, grid: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Values of a stream at the ``grid`` times, and the index of the message each frame came from."""
    indices = source_indices(times, grid, method)
    if method != "linear" or len(times) < 2:
        return values[indices], indices
    right = np.clip(np.searchsorted(times, grid, side="right"), 1, len(times) - 1)
    left = right - 1
    span = times[right] - times[left]
    # identical timestamps (span 0) take the later message, like a sensor that re-sent its reading
    weight = np.where(span > 0, (grid - times[left]) / np.where(span > 0, span, 1.0), 1.0).clip(0.0, 1.0)
    shape = (len(grid),) + (1,) * (values.ndim - 1)
    low, high = values[left].astype(np.float64), values[right].astype(np.float64)
    return (low + (high - low) * weight.reshape(shape)).astype(values.dtype), indices


@dataclass
class StreamReport:
    """Per-topic timing of a whole import: message rate and gaps, and what resampling did to the frames."""

    topic: str
    role: str  # state, action, image <camera>, marker
    messages: int = 0
    rate_hz: float = 0.0  # from the median interval, robust to gaps
    gaps: int = 0  # intervals longer than 2 median intervals and longer than a frame
    longest_gap_s: float = 0.0
    frames: int = 0  # store frames filled from this topic
    duplicated: int = 0  # frames that reuse the message of the frame before (source slower than fps, or a gap)
    dropped: int = 0  # messages inside an episode that no frame used (source faster than fps)

    def add_stream(self, times: np.ndarray, fps: float) -> None:
        """Account for the messages of one bag."""
        self.messages += len(times)
        if len(times) < 2:
            return
        intervals = np.diff(times)
        median = float(np.median(intervals))
        if median > 0:
            self.rate_hz = 1.0 / median
        gaps = intervals[(intervals > 2 * median) & (intervals > 1.0 / fps)]
        self.gaps += len(gaps)
        self.longest_gap_s = max(self.longest_gap_s, float(intervals.max()))

    def add_episode(self, times: np.ndarray, grid: np.ndarray, indices: np.ndarray) -> None:
        """Account for one episode's frames, sampled from the messages at ``indices``."""
        self.frames += len(grid)
        self.duplicated += int(np.sum(indices[1:] == indices[:-1]))
        inside = np.flatnonzero((times >= grid[0]) & (times <= grid[-1]))
        self.dropped += int(len(np.setdiff1d(inside, indices)))

    def line(self) -> str:
        gap = f"{self.gaps} (longest {self.longest_gap_s:.2f} s)" if self.gaps else "none"
        return (f"  {self.topic:<32} {self.role:<14} {self.messages:>7} msgs {self.rate_hz:7.1f} Hz  gaps {gap};  "
                f"frames {self.frames}, duplicated {self.duplicated}, dropped {self.dropped}")
