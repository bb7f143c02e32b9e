"""Small statistics for results shown to users: success rates with Wilson intervals, mean +- std over seeds,
Pearson and Spearman correlation.

numpy only (scipy is not a dependency). Spearman's rho is Pearson's r of the ranks, with tied values given the
average of the ranks they span ("fractional ranking", as scipy.stats.spearmanr does); the shortcut formula
1 - 6 sum d^2 / (n (n^2 - 1)) is only right without ties, which success rates in percent often have.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a success rate (Wilson 1927; 95% for z = 1.96), as fractions in [0, 1].

    Unlike the normal approximation p +- z sqrt(p (1 - p) / n) it stays inside [0, 1] and is not empty at 0 or n
    successes, which is where policy success rates often are. (0, 1) when n is 0.
    """
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def format_success(successes: int, n: int) -> str:
    """A success rate as users should read it: "45/50 = 90% (95% CI 79-96%)"."""
    if n <= 0:
        return "no episodes"
    low, high = wilson_interval(successes, n)
    return f"{successes}/{n} = {100 * successes / n:.0f}% (95% CI {100 * low:.0f}-{100 * high:.0f}%)"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) of `values`; the std is 0 for a single value."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return math.nan, math.nan
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else 0.0


def rankdata(values: Sequence[float]) -> np.ndarray:
    """Ranks 1..n of `values`, ties sharing the average of the ranks they span: [10, 20, 20, 30] -> [1, 2.5, 2.5, 4]."""
    array = np.asarray(values, dtype=np.float64)
    order = np.argsort(array, kind="mergesort")
    ranks = np.empty(len(array), dtype=np.float64)
    ranks[order] = np.arange(1, len(array) + 1)
    for value in np.unique(array):
        tied = array == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson's r of two equally long sequences; None when it is undefined (fewer than 2 points, or a constant)."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"pearson needs two 1-D sequences of the same length, got {a.shape} and {b.shape}")
    if len(a) < 2:
        return None
    a, b = a - a.mean(), b - b.mean()
    denominator = math.sqrt(float(a @ a) * float(b @ b))
    if denominator == 0:  # a constant sequence carries no ranking to agree or disagree with
        return None
    return float(np.clip((a @ b) / denominator, -1.0, 1.0))


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rho: Pearson's r of the tie-averaged ranks; None when it is undefined."""
    if len(x) != len(y):
        raise ValueError(f"spearman needs two sequences of the same length, got {len(x)} and {len(y)}")
    return pearson(rankdata(x), rankdata(y)) if len(x) >= 2 else None


def format_correlation(value: float | None, digits: int = 3) -> str:
    """A signed correlation for tables and titles ("+0.632"), or "undefined" where it is None."""
    return "undefined" if value is None else f"{value:+.{digits}f}"


def agresti_caffo_interval(successes_a: int, n_a: int, successes_b: int, n_b: int,
                           z: float = 1.96) -> tuple[float, float]:
    """95% interval (default z) of the difference of two success rates, rate_a - rate_b, by Agresti & Caffo
    (2000): add one success and one failure to each group, then the Wald interval. Clipped to [-1, 1]."""
    if n_a < 1 or n_b < 1:
        raise ValueError("both groups need at least one trial")
    p_a, p_b = (successes_a + 1) / (n_a + 2), (successes_b + 1) / (n_b + 2)
    half = z * math.sqrt(p_a * (1 - p_a) / (n_a + 2) + p_b * (1 - p_b) / (n_b + 2))
    return max(-1.0, p_a - p_b - half), min(1.0, p_a - p_b + half)


def bootstrap_interval(statistic: Callable[..., float | None], *columns: Sequence[float], resamples: int = 2000,
                       seed: int = 0, level: float = 0.95) -> tuple[float, float] | None:
    """Percentile bootstrap interval of `statistic(*columns)`, resampling the rows (the agents of a rank
    experiment: each row is one agent's paired figures) with replacement. Resamples where the statistic is
    undefined (None: e.g. every resampled agent tied) are left out; None when fewer than half are defined."""
    arrays = [np.asarray(c, dtype=np.float64) for c in columns]
    n = len(arrays[0])
    if n < 2 or any(len(a) != n for a in arrays):
        return None
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        rows = rng.integers(0, n, n)
        value = statistic(*(a[rows] for a in arrays))
        if value is not None and not math.isnan(value):
            values.append(value)
    if len(values) < resamples / 2:
        return None
    tail = 100 * (1 - level) / 2
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def format_interval(bounds: Sequence[float] | None, style: str = "{:+.2f}") -> str:
    """" (95% CI a..b)" of an interval (e.g. `bootstrap_interval`'s) in `style`, or "" when there is none."""
    return "" if not bounds else f" (95% CI {style.format(bounds[0])}..{style.format(bounds[1])})"


def mean_absolute_error(x: Sequence[float], y: Sequence[float]) -> float:
    """Mean |x - y| of two paired sequences (success rates in points: how far imagination is from the sim)."""
    return float(np.mean(np.abs(np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64))))
