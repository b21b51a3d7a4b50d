"""Subgroup tables for the metadata a predictions file carries through from its manifest.

JSRT gives subtlety (1-5, nodule cases only), nodule size in mm, sex and age; cross-validated
predictions carry ``fold``. Cases with no value for a variable (e.g. subtlety of a case without
a nodule) are left out of that table and counted. Metrics in a row use the same predictions
(and threshold) as the whole report; an AUC is given only where both classes are present.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lungcad.evaluation.metrics import multiclass_metric_values, roc_auc, threshold_metrics
from lungcad.evaluation.predictions import Predictions


@dataclass(frozen=True)
class SubgroupVariable:
    column: str
    title: str
    bins: tuple[float, ...] | None = None  # band edges; None: each distinct value is a group
    band_labels: tuple[str, ...] | None = None
    right_closed: bool = True


SUBGROUP_VARIABLES = (
    SubgroupVariable("subtlety", "Nodule subtlety (1 = extremely subtle, 5 = obvious)"),
    SubgroupVariable("size_mm", "Nodule size (mm)", (-np.inf, 10, 20, 30, np.inf),
                     ("<=10 mm", "11-20 mm", "21-30 mm", ">30 mm"), right_closed=True),
    SubgroupVariable("sex", "Sex"),
    SubgroupVariable("age", "Age (years)", (-np.inf, 40, 60, 80, np.inf),
                     ("<40", "40-59", "60-79", ">=80"), right_closed=False),
    SubgroupVariable("fold", "Cross-validation fold"),
)


def _none_if_nan(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _group_labels(frame: pd.DataFrame, variable: SubgroupVariable) -> pd.Series:
    """Group label per row (NaN where the row has no value), as an ordered categorical."""
    raw = frame[variable.column]
    if variable.bins is not None:
        numeric = pd.to_numeric(raw, errors="coerce")
        return pd.cut(numeric, bins=list(variable.bins), labels=list(variable.band_labels),
                      right=variable.right_closed)
    text = raw.astype("string").str.strip()
    text = text.where(text != "")
    numeric = pd.to_numeric(text, errors="coerce")
    if numeric.notna().sum() == text.notna().sum():  # all numeric: order numerically, print 3 not 3.0
        labels = numeric.map(lambda v: f"{v:g}" if pd.notna(v) else np.nan)
        order = [f"{v:g}" for v in sorted(numeric.dropna().unique())]
    else:
        labels, order = text, sorted(text.dropna().unique())
    return pd.Categorical(labels, categories=order, ordered=True)


def subgroup_tables(preds: Predictions, predicted: np.ndarray) -> list[dict]:
    """One table per metadata variable present in the file; ``predicted`` are class indices."""
    tables = []
    frame = preds.frame.reset_index(drop=True)
    for variable in SUBGROUP_VARIABLES:
        if variable.column not in frame.columns:
            continue
        groups = pd.Series(_group_labels(frame, variable), index=frame.index)
        if groups.notna().sum() == 0:
            continue
        rows = []
        for value in groups.cat.categories:
            members = np.flatnonzero((groups == value).to_numpy())
            if members.size:
                rows.append({"group": str(value), **_group_row(preds, predicted, members)})
        tables.append({
            "variable": variable.column,
            "title": variable.title,
            "n_without_value": int(groups.isna().sum()),
            "columns": ["group", *[k for k in rows[0] if k != "group"]],
            "rows": rows,
        })
    return tables


def _group_row(preds: Predictions, predicted: np.ndarray, members: np.ndarray) -> dict:
    y = preds.y[members]
    pred = predicted[members]
    if preds.binary:
        t = threshold_metrics(y == 1, pred == 1)
        both = 0 < y.sum() < len(y)
        return {
            "n": int(len(members)),
            "positives": int(y.sum()),
            "accuracy": _none_if_nan(t["accuracy"]),
            "sensitivity": _none_if_nan(t["sensitivity"]),
            "specificity": _none_if_nan(t["specificity"]),
            "roc_auc": _none_if_nan(roc_auc(y, preds.positive_scores[members])) if both else None,
        }
    k = len(preds.classes)
    with np.errstate(all="ignore"):
        m = multiclass_metric_values(y, preds.probs[members], pred, k)
    counts = {f"n_{c}": int((y == i).sum()) for i, c in enumerate(preds.classes)}
    return {
        "n": int(len(members)),
        **counts,
        "accuracy": _none_if_nan(m["accuracy"]),
        "balanced_accuracy": _none_if_nan(m["balanced_accuracy"]),
        "macro_roc_auc": _none_if_nan(m["macro_roc_auc"]),
    }
