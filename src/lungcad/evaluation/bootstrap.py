"""Seeded bootstrap confidence intervals for many metrics at once.

Rows (cases) are resampled with replacement, the same rows for every metric (paired
resampling: label, scores and prediction of a case travel together). The interval is
:func:`scipy.stats.bootstrap`'s BCa where that is defined; where BCa is degenerate (the statistic
barely varies, or the jackknife hits an undefined value) the percentile interval of the same
resamples is used instead, and the method used is recorded per metric. Where some resamples
leave a metric undefined (e.g. no positive case drawn, so no AUC), the percentile interval of the
resamples where it is defined is given and the number left out is recorded.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE_LEVEL = 0.95
MIN_CASES = 2  # resampling one case gives that case back: no interval
TOO_FEW_CASES = f"none (fewer than {MIN_CASES} cases)"
MAX_CELLS_PER_BATCH = 2_000_000  # resamples x cases held in memory at once


@dataclass(frozen=True)
class Interval:
    low: float | None
    high: float | None
    method: str  # "BCa", "percentile", "percentile (undefined resamples left out)", or "none"
    n_undefined: int = 0  # resamples where the metric had no value

    def as_dict(self) -> dict:
        return {"ci_low": self.low, "ci_high": self.high, "ci_method": self.method,
                "ci_undefined_resamples": self.n_undefined}


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def bootstrap_intervals(
    n_cases: int,
    statistic: Callable[[np.ndarray], dict[str, np.ndarray]],
    n_resamples: int,
    seed: int,
    confidence_level: float = CONFIDENCE_LEVEL,
) -> dict[str, Interval]:
    """Confidence interval of every metric that ``statistic`` returns.

    ``statistic(indices)`` gets case indices of shape ``(..., n)`` (the last axis runs over
    cases) and returns ``{metric name: values of shape (...)}``. The same seed gives the same
    resamples, hence the same intervals.
    """
    probe = statistic(np.arange(n_cases))
    names = list(probe)
    point = np.array([float(probe[name]) for name in names])
    if n_resamples <= 0:
        return {name: Interval(None, None, "none") for name in names}
    if n_cases < MIN_CASES:
        return {name: Interval(None, None, TOO_FEW_CASES) for name in names}

    def stacked(indices: np.ndarray, axis: int = -1) -> np.ndarray:
        indices = np.moveaxis(np.asarray(indices), axis, -1)
        values = statistic(indices)
        return np.stack([np.asarray(values[name], dtype=float) for name in names])

    batch = max(1, MAX_CELLS_PER_BATCH // max(n_cases, 1))
    common = dict(statistic=stacked, n_resamples=n_resamples, vectorized=True, batch=batch,
                  confidence_level=confidence_level)
    with warnings.catch_warnings():
        # BCa's degeneracy warnings are expected here; the fallback below handles and records them
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            bca = stats.bootstrap((np.arange(n_cases),), method="BCa",
                                  rng=np.random.default_rng(seed), **common)
            percentile = stats.bootstrap((np.arange(n_cases),), method="percentile",
                                         bootstrap_result=bca, rng=np.random.default_rng(seed),
                                         **{**common, "n_resamples": 0})
    distribution = np.atleast_2d(bca.bootstrap_distribution)
    alpha = (1 - confidence_level) / 2
    intervals: dict[str, Interval] = {}
    for i, name in enumerate(names):
        draws = distribution[i]
        n_undefined = int((~np.isfinite(draws)).sum())
        if not np.isfinite(point[i]) or n_undefined == len(draws):
            intervals[name] = Interval(None, None, "none (metric undefined)", n_undefined)
            continue
        low, high = bca.confidence_interval.low[i], bca.confidence_interval.high[i]
        if n_undefined == 0 and np.isfinite(low) and np.isfinite(high):
            intervals[name] = Interval(float(low), float(high), "BCa")
            continue
        low, high = percentile.confidence_interval.low[i], percentile.confidence_interval.high[i]
        if n_undefined == 0 and np.isfinite(low) and np.isfinite(high):
            intervals[name] = Interval(float(low), float(high), "percentile")
            continue
        defined = draws[np.isfinite(draws)]
        intervals[name] = Interval(
            _finite_or_none(np.quantile(defined, alpha)),
            _finite_or_none(np.quantile(defined, 1 - alpha)),
            "percentile (undefined resamples left out)",
            n_undefined,
        )
    return intervals


GROUP_METHOD = "percentile, groups resampled"


def group_bootstrap_intervals(
    groups,
    statistic: Callable[[np.ndarray], dict[str, np.ndarray]],
    n_resamples: int,
    seed: int,
    confidence_level: float = CONFIDENCE_LEVEL,
) -> dict[str, Interval]:
    """Confidence interval of every metric of ``statistic``, resampling GROUPS, not rows.

    Where rows come in clusters (slices of one patient, near-duplicates of one image), rows are
    not independent and resampling them gives intervals that are too narrow. Here each resample
    draws as many groups as there are, with replacement, and keeps every row of each drawn group
    (a cluster bootstrap); ``statistic(indices)`` gets the 1-D row indices of one resample. The
    interval is the percentile interval of the resamples (a resample's size varies, so BCa's
    jackknife does not apply as for rows); resamples where a metric is undefined are left out
    and counted. ``groups`` holds one group label per row; the same seed gives the same draws.
    """
    labels = np.asarray(groups)
    _, codes = np.unique(labels.astype(str), return_inverse=True)
    members = [np.flatnonzero(codes == g) for g in range(int(codes.max()) + 1 if codes.size else 0)]
    probe = statistic(np.arange(labels.size))
    names = list(probe)
    if n_resamples <= 0:
        return {name: Interval(None, None, "none") for name in names}
    if len(members) < MIN_CASES:
        return {name: Interval(None, None, f"none (fewer than {MIN_CASES} groups)")
                for name in names}
    rng = np.random.default_rng(seed)
    draws = np.empty((len(names), n_resamples))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for b in range(n_resamples):
            chosen = rng.integers(0, len(members), size=len(members))
            values = statistic(np.concatenate([members[g] for g in chosen]))
            draws[:, b] = [float(values[name]) for name in names]
    alpha = (1 - confidence_level) / 2
    intervals: dict[str, Interval] = {}
    for i, name in enumerate(names):
        defined = draws[i][np.isfinite(draws[i])]
        n_undefined = n_resamples - defined.size
        if not np.isfinite(float(probe[name])) or defined.size == 0:
            intervals[name] = Interval(None, None, "none (metric undefined)", n_undefined)
            continue
        method = GROUP_METHOD + (" (undefined resamples left out)" if n_undefined else "")
        intervals[name] = Interval(float(np.quantile(defined, alpha)),
                                   float(np.quantile(defined, 1 - alpha)), method, n_undefined)
    return intervals
