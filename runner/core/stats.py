"""Confidence intervals shared by `make eval` (recall, precision) and the analysis and social-acceptability
dashboards.

Small samples are the rule here (a few hundred survey answers, a few dozen decisions per camera), so
proportions use the Wilson score interval, which stays inside [0, 1] and keeps its coverage near 0
and 1 where the textbook Wald interval collapses; means use Student's t interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats as _scipy_stats

DEFAULT_CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its confidence interval (None where the sample is empty)."""

    value: float | None
    low: float | None
    high: float | None
    n: int


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, not {confidence}")
    return float(_scipy_stats.norm.ppf(0.5 + confidence / 2))


def wilson_interval(successes: int, n: int, confidence: float = DEFAULT_CONFIDENCE) -> Estimate:
    """Share successes / n with its Wilson score interval.

    Args:
        successes: how many of the n trials succeeded (e.g. confirmed alerts, respondents agreeing).
        n: how many trials (decided alerts, answers); 0 gives an empty estimate.
        confidence: the interval's level, strictly between 0 and 1.

    Returns:
        The share with its bounds, inside [0, 1]; value, low and high are None when n is 0.

    Raises:
        ValueError: successes outside 0..n, or (when n > 0) a confidence outside (0, 1).
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return Estimate(None, None, None, 0)
    z = _z(confidence)
    share = successes / n
    denominator = 1 + z * z / n
    centre = (share + z * z / (2 * n)) / denominator
    half_width = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / denominator
    # Clamp float noise: at 0 or n successes the bound is exactly 0 or 1.
    return Estimate(share, max(0.0, centre - half_width), min(1.0, centre + half_width), n)


def mean_t_interval(values: Sequence[float], confidence: float = DEFAULT_CONFIDENCE) -> Estimate:
    """Mean of `values` with Student's t interval (no interval from a single value).

    Args:
        values: the sample (e.g. Likert answers as floats).
        confidence: the interval's level, between 0 and 1.

    Returns:
        The mean with its bounds; low and high are None for a single value, and everything is None for
        an empty sample.
    """
    n = len(values)
    if n == 0:
        return Estimate(None, None, None, 0)
    mean = math.fsum(values) / n
    if n == 1:
        return Estimate(mean, None, None, 1)
    variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    half_width = float(_scipy_stats.t.ppf(0.5 + confidence / 2, n - 1)) * math.sqrt(variance / n)
    return Estimate(mean, mean - half_width, mean + half_width, n)
