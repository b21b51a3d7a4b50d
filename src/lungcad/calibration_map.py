"""A model's calibration map (model.json ``calibration``) applied to probabilities.

Fitting the map is evaluation's job (:func:`lungcad.evaluation.calibration.fit_calibration`,
out of fold); applying it is part of every forward pass (:meth:`lungcad.lung_model.LungModel.
predict_proba`), so it sits low, beside the model format, and needs nothing but NumPy.
"""

from __future__ import annotations

import numpy as np

CLIP = 1e-7


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), CLIP, 1 - CLIP)
    return np.log(p) - np.log1p(-p)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def apply_calibration(probs: np.ndarray, calibration: dict | None) -> np.ndarray:
    """``probs`` (N, C) through the map (unchanged where ``calibration`` is None)."""
    if not calibration:
        return probs
    p = np.asarray(probs, dtype=np.float64)
    if calibration["method"] == "platt":
        q = 1.0 / (1.0 + np.exp(-(calibration["a"] * logit(p[:, 1]) + calibration["b"])))
        out = np.stack([1.0 - q, q], axis=1)
    elif calibration["method"] == "temperature":
        out = softmax(np.log(np.clip(p, CLIP, 1.0)) / calibration["temperature"])
    else:
        raise ValueError(f"unknown calibration method {calibration['method']!r}")
    return out.astype(np.asarray(probs).dtype if np.asarray(probs).dtype.kind == "f" else np.float64)
