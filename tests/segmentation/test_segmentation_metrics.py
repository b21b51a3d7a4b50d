"""Dice, IoU and HD95 (MONAI) on hand cases, and the summary's intervals and worst cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lungcad.evaluation.segmentation import mask_metrics, summarise_segmentation


def test_metrics_on_two_shifted_squares():
    a = np.zeros((40, 40), bool)
    a[10:20, 10:20] = True                    # 100 pixels
    b = np.zeros((40, 40), bool)
    b[10:20, 12:22] = True                    # the same square, 2 px to the right
    m = mask_metrics(a, b, spacing_mm=0.5)
    assert m["dice"] == pytest.approx(2 * 80 / 200)
    assert m["iou"] == pytest.approx(80 / 120)
    assert m["hd95_mm"] == pytest.approx(1.0)  # 2 px at 0.5 mm
    same = mask_metrics(a, a, spacing_mm=0.7)
    assert same == {"dice": 1.0, "iou": 1.0, "hd95_mm": 0.0}


def test_an_empty_prediction_scores_zero_and_an_infinite_distance():
    a = np.zeros((20, 20), bool)
    a[5:10, 5:10] = True
    m = mask_metrics(np.zeros_like(a), a, spacing_mm=1.0)
    assert m["dice"] == 0.0 and m["hd95_mm"] == float("inf")


def test_summary_means_intervals_folds_and_worst_cases():
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"path": [f"im{i}.png" for i in range(30)],
                          "fold": np.arange(30) % 3,
                          "dice": rng.uniform(0.9, 1.0, 30), "iou": rng.uniform(0.8, 1.0, 30),
                          "hd95_mm": rng.uniform(1, 10, 30), "plausible": [True] * 30})
    table.loc[7, "dice"] = 0.2
    summary = summarise_segmentation(table, n_bootstrap=200, seed=0)
    dice = summary["metrics"]["dice"]
    assert dice["value"] == pytest.approx(table["dice"].mean())
    assert dice["ci_low"] < dice["value"] < dice["ci_high"]
    assert summary["per_fold"]["dice"]["values"] == pytest.approx(
        table.groupby("fold")["dice"].mean().tolist())
    assert summary["worst"][0]["path"] == "im7.png" and len(summary["worst"]) == 5
    assert summary["implausible"] == []
