"""Calibration: reliability bins and expected calibration error (ECE).

Binning: ``N_BINS`` equal-width bins on [0, 1]; bin i holds confidences in [i/N, (i+1)/N), the
last bin also holds 1.0. ECE = sum over non-empty bins of (cases in bin / all cases) *
|mean confidence in bin - observed frequency in bin|.

- Binary: the confidence is the probability of the positive class and the observed frequency is
  the fraction of positives (the classic reliability diagram).
- Multi-class: top-label calibration; the confidence is the highest class probability and the
  observed frequency is the fraction of cases whose top class is the true class.
"""

from __future__ import annotations

import numpy as np

N_BINS = 10
BINNING_TEXT = (f"{N_BINS} equal-width bins on [0, 1] ([0, 0.1), [0.1, 0.2), ..., [0.9, 1.0]); "
                "ECE weights each bin by its share of the cases")


def reliability_bins(confidence: np.ndarray, outcome: np.ndarray, n_bins: int = N_BINS) -> list[dict]:
    """Per bin: lower, upper, n, mean confidence and observed frequency (None when empty)."""
    confidence = np.asarray(confidence, dtype=float)
    outcome = np.asarray(outcome, dtype=float)
    bin_index = np.clip(np.floor(confidence * n_bins).astype(int), 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        in_bin = bin_index == b
        count = int(in_bin.sum())
        bins.append({
            "lower": b / n_bins,
            "upper": (b + 1) / n_bins,
            "n": count,
            "mean_confidence": float(confidence[in_bin].mean()) if count else None,
            "observed_frequency": float(outcome[in_bin].mean()) if count else None,
        })
    return bins


def expected_calibration_error(confidence: np.ndarray, outcome: np.ndarray,
                               n_bins: int = N_BINS) -> float:
    bins = reliability_bins(confidence, outcome, n_bins)
    total = sum(b["n"] for b in bins)
    return float(sum(b["n"] / total * abs(b["mean_confidence"] - b["observed_frequency"])
                     for b in bins if b["n"]))
