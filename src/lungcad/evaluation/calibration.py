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

from lungcad.calibration_map import CLIP, apply_calibration, logit, softmax

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


def ece_noise_floor(probs: np.ndarray, n_simulations: int = 1000, seed: int = 0) -> dict:
    """The ECE a PERFECTLY calibrated model would show with these probabilities (N, C) on N
    cases: outcomes drawn from the probabilities themselves, ECE measured as
    :func:`calibration_scores` does. Binned ECE is biased upwards on small sets, so a measured
    ECE is only evidence of miscalibration where it lies above this floor. Mean and 95th
    percentile over ``n_simulations`` draws."""
    probs = np.asarray(probs, dtype=np.float64)
    probs = probs / probs.sum(axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(probs, axis=1)
    values = []
    for _ in range(n_simulations):
        u = rng.random((len(probs), 1))
        drawn = np.minimum((u > cumulative).sum(axis=1), probs.shape[1] - 1)
        values.append(calibration_scores(probs, drawn)["ece"])
    return {"mean": float(np.mean(values)), "p95": float(np.quantile(values, 0.95)),
            "n_simulations": int(n_simulations)}


# ---------------------------------------------------------------------------------------------
# Fitting a calibration map (issue 15): Platt scaling for binary models, temperature scaling for
# multi-class ones, fitted on pooled OUT-OF-FOLD predictions only (each made by a fold model that
# never trained on the image). A map is a small dict stored in model.json (``calibration``) and
# applied by every runtime to the network's probabilities (:func:`apply_calibration`).

CALIBRATION_NOTE = ("fitted on the pooled out-of-fold predictions of the cross-validation (each "
                    "image predicted by a fold model that never trained on it), never on the "
                    "final model's own training images")


def fit_calibration(probs: np.ndarray, y: np.ndarray) -> dict:
    """The calibration map of ``probs`` (N, C) with true class indices ``y`` (N,): Platt
    (``a * logit(p) + b``, by maximum likelihood) for C = 2, one temperature (by the Brier
    score) for C > 2."""
    from scipy.optimize import minimize

    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y, dtype=int)
    if probs.shape[1] == 2:
        x = logit(probs[:, 1])

        def nll(params):
            a, b = params
            z = a * x + b
            return float(np.mean(np.logaddexp(0, z) - y * z))

        a, b = minimize(nll, [1.0, 0.0], method="L-BFGS-B",
                        bounds=[(1e-3, 100.0), (-50.0, 50.0)]).x
        return {"method": "platt", "a": float(a), "b": float(b), "n": int(len(y))}
    # One temperature, chosen by the Brier score (a proper score, like log-loss, but not
    # dominated by a few confidently wrong images: on chest-ct-4class the log-loss optimum
    # T = 1.63 doubled the out-of-fold ECE, the Brier optimum T ~ 1.0 kept it).
    from scipy.optimize import minimize_scalar

    logp = np.log(np.clip(probs, CLIP, 1.0))
    onehot = np.eye(probs.shape[1])[y]

    def brier_t(t):
        return float(np.mean(((softmax(logp / t) - onehot) ** 2).sum(axis=1)))

    t = minimize_scalar(brier_t, bounds=(0.05, 20.0), method="bounded").x
    return {"method": "temperature", "temperature": float(t), "objective": "brier",
            "n": int(len(y))}


def calibrated_threshold(threshold: float | None, calibration: dict | None) -> float | None:
    """A binary decision threshold on the calibrated scale (Platt is increasing: same verdicts)."""
    if threshold is None or not calibration or calibration["method"] != "platt":
        return threshold
    t = np.array([[1.0 - threshold, threshold]])
    return float(apply_calibration(t, calibration)[0, 1])


def crossfit_calibration(probs: np.ndarray, y: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Calibrated probabilities where each fold's images go through a map fitted on the OTHER
    folds' out-of-fold predictions only: an honest (out-of-fold) view of calibration."""
    probs = np.asarray(probs, dtype=np.float64)
    out = np.empty_like(probs)
    folds = np.asarray(folds)
    for fold in np.unique(folds):
        held = folds == fold
        out[held] = apply_calibration(probs[held], fit_calibration(probs[~held], y[~held]))
    return out


def calibration_scores(probs: np.ndarray, y: np.ndarray) -> dict:
    """ECE (binary: positive class; multi-class: top label) and Brier score of ``probs``."""
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y, dtype=int)
    from lungcad.evaluation.metrics import brier_binary, brier_multiclass

    if probs.shape[1] == 2:  # the report's own conventions (metrics.brier_*)
        brier = float(brier_binary(y == 1, probs[:, 1]))
        ece = expected_calibration_error(probs[:, 1], y == 1)
    else:
        brier = float(brier_multiclass(np.eye(probs.shape[1])[y], probs))
        ece = expected_calibration_error(probs.max(axis=1), probs.argmax(axis=1) == y)
    return {"ece": ece, "brier": brier}
