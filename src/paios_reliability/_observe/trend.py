"""A robust growth estimate: Theil-Sen slope with a one-sided confidence bound.

The median of pairwise slopes ignores the outliers a garbage collector
makes; the lower bound of its confidence interval says whether growth is
real.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


__all__ = ["theil_sen"]


# -- the estimator -----------------------------------------------------------------


# Two-sided 99.9 %: a flat series clears the lower bound with probability < 0.05 %.
_Z_999 = 3.2905
# The fewest points for which that interval has a lower end at all.
_MIN_CONFIDENT_POINTS = 9


def _pairwise_slopes(points: list[tuple[float, float]]) -> list[float]:
    slopes: list[float] = []
    for i, (x1, y1) in enumerate(points):
        for x2, y2 in points[i + 1 :]:
            if x2 != x1:
                slopes.append((y2 - y1) / (x2 - x1))
    slopes.sort()
    return slopes


def _median(ordered: list[float]) -> float:
    n = len(ordered)
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _sen_lower_bound(ordered: list[float], n: int, z: float) -> float | None:
    """Lower end of Sen's two-sided confidence interval for the slope.

    ``ordered`` are the sorted pairwise slopes of ``n`` points. Under "no
    trend" Kendall's S has variance n(n-1)(2n+5)/18; the bound is the slope of
    rank (N - z*sd(S)) / 2 among the N pairwise slopes (Sen 1968), linearly
    interpolated. It needs no assumption about the noise beyond independence.
    ``None`` when there are too few points for that confidence.
    """
    count = len(ordered)
    rank = (count - z * math.sqrt(n * (n - 1) * (2 * n + 5) / 18.0)) / 2.0
    if rank < 1.0:
        return None
    below = int(rank)  # 1-based
    if below >= count:
        return ordered[-1]
    frac = rank - below
    return ordered[below - 1] + frac * (ordered[below] - ordered[below - 1])


def theil_sen(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Theil-Sen slope of ``(x, y)`` points and the share of pairs rising.

    Returns:
        ``(slope, rising)``: the median of the pairwise slopes, and the
        fraction of pairs (with distinct x) whose slope is positive.
        ``(0.0, 0.0)`` for fewer than two distinct x.
    """
    slopes = _pairwise_slopes(points)
    if not slopes:
        return 0.0, 0.0
    return _median(slopes), sum(1 for s in slopes if s > 0) / len(slopes)
