"""Synthetic predictions files shaped like the ones lungcad predict writes (JSRT-like metadata)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def binary_predictions(n: int = 198, seed: int = 0, separation: float = 1.5,
                       classes: tuple[str, str] = ("rest", "malignant"),
                       model: str = "ct_cnn", with_metadata: bool = True) -> pd.DataFrame:
    """Binary predictions: positives score higher by ``separation`` logits on average."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(int)
    logits = rng.normal(0, 1.2, n) + separation * (y - 0.4)
    p = 1 / (1 + np.exp(-logits))
    frame = pd.DataFrame({
        "path": [f"images/case{i:04d}.png" for i in range(n)],
        "true_label": np.array(classes)[y],
        f"prob_{classes[0]}": np.round(1 - p, 6),
        f"prob_{classes[1]}": np.round(p, 6),
        "predicted_label": np.array(classes)[(p >= 0.5).astype(int)],
        "model": model,
    })
    if with_metadata:
        has_nodule = y.astype(bool) | (rng.random(n) < 0.35)
        frame["subtlety"] = np.where(has_nodule, rng.integers(1, 6, n), np.nan)
        frame["size_mm"] = np.where(has_nodule, rng.integers(5, 45, n), np.nan)
        frame["age"] = rng.integers(25, 90, n).astype(float)
        frame.loc[rng.choice(n, 2, replace=False), "age"] = np.nan
        frame["sex"] = rng.choice(["Male", "Female"], n)
        frame["x_512"] = rng.uniform(50, 460, n)
    return frame


def multiclass_predictions(n: int = 240, seed: int = 0,
                           classes: tuple[str, ...] = ("normal", "benign", "malignant"),
                           signal: float = 1.6) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    k = len(classes)
    y = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), y] += signal
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    frame = pd.DataFrame({"path": [f"images/slice{i:04d}.jpg" for i in range(n)],
                          "true_label": np.array(classes)[y]})
    for i, c in enumerate(classes):
        frame[f"prob_{c}"] = probs[:, i]
    frame["predicted_label"] = np.array(classes)[probs.argmax(axis=1)]
    frame["model"] = "ct_cnn"
    frame["fold"] = rng.integers(0, 5, n)
    return frame
