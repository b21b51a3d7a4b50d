"""Classification metrics, vectorised over bootstrap resamples.

Every function takes arrays whose LAST axis runs over cases, so the same code scores the full
data (shape ``(n,)``) and a batch of resamples (shape ``(B, n)``) in one call; this is what lets
:func:`scipy.stats.bootstrap` run thousands of resamples quickly. An undefined value (an AUC with
one class present, a PPV with no predicted positives) is NaN, never a made-up number.
The tests check each against scikit-learn.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

LOG_LOSS_EPS = np.finfo(np.float64).eps  # the clipping scikit-learn's log_loss uses


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    numerator = np.asarray(numerator, dtype=float)
    denominator = np.asarray(denominator, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


def confusion_counts(y: np.ndarray, predicted: np.ndarray) -> dict[str, np.ndarray]:
    """tp, fp, tn, fn for 0/1 labels and 0/1 predictions (summed over the last axis)."""
    y = np.asarray(y, dtype=bool)
    predicted = np.asarray(predicted, dtype=bool)
    return {
        "tp": (y & predicted).sum(axis=-1),
        "fp": (~y & predicted).sum(axis=-1),
        "tn": (~y & ~predicted).sum(axis=-1),
        "fn": (y & ~predicted).sum(axis=-1),
    }


def threshold_metrics(y: np.ndarray, predicted: np.ndarray) -> dict[str, np.ndarray]:
    """Sensitivity, specificity, PPV, NPV, F1, balanced accuracy, accuracy of 0/1 predictions."""
    c = confusion_counts(y, predicted)
    tp, fp, tn, fn = c["tp"], c["fp"], c["tn"], c["fn"]
    sensitivity = _ratio(tp, tp + fn)
    specificity = _ratio(tn, tn + fp)
    return {
        "sensitivity": sensitivity,
        "specificity": specificity,
        "ppv": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
        # F1 = 2TP / (2TP + FP + FN): defined whenever there is a positive or a predicted positive
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "balanced_accuracy": (sensitivity + specificity) / 2,
        "accuracy": _ratio(tp + tn, tp + fp + tn + fn),
    }


def roc_auc(y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Area under the ROC curve via the Mann-Whitney U statistic (ties count one half)."""
    y = np.asarray(y, dtype=float)
    ranks = rankdata(scores, axis=-1)  # average ranks for ties
    n_pos = y.sum(axis=-1)
    n_neg = y.shape[-1] - n_pos
    u = (ranks * y).sum(axis=-1) - n_pos * (n_pos + 1) / 2
    return _ratio(u, n_pos * n_neg)


def average_precision(y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Average precision as scikit-learn defines it: sum over thresholds of (R_k - R_k-1) * P_k.

    Tied scores form one threshold, so each positive contributes the precision measured at the
    end of its tie group.
    """
    y = np.asarray(y, dtype=float)
    scores = np.asarray(scores, dtype=float)
    order = np.argsort(-scores, axis=-1, kind="stable")
    sorted_scores = np.take_along_axis(scores, order, axis=-1)
    sorted_y = np.take_along_axis(y, order, axis=-1)
    n = scores.shape[-1]
    precision = np.cumsum(sorted_y, axis=-1) / np.arange(1, n + 1)
    is_group_end = np.ones(scores.shape, dtype=bool)
    is_group_end[..., :-1] = sorted_scores[..., 1:] != sorted_scores[..., :-1]
    position = np.broadcast_to(np.arange(n), scores.shape)
    # index of the end of each case's tie group: the next group end at or after it
    group_end = np.flip(np.minimum.accumulate(np.flip(np.where(is_group_end, position, n), -1),
                                              axis=-1), -1)
    precision_at_end = np.take_along_axis(precision, group_end, axis=-1)
    return _ratio((sorted_y * precision_at_end).sum(axis=-1), sorted_y.sum(axis=-1))


def log_loss_from_true_probs(true_class_probs: np.ndarray) -> np.ndarray:
    """Mean negative log of the probability given to the true class (clipped like scikit-learn)."""
    clipped = np.clip(true_class_probs, LOG_LOSS_EPS, 1.0)
    return -np.log(clipped).mean(axis=-1)


def brier_binary(y: np.ndarray, positive_scores: np.ndarray) -> np.ndarray:
    """Mean squared difference between the positive-class probability and the 0/1 outcome."""
    return ((np.asarray(positive_scores, dtype=float) - np.asarray(y, dtype=float)) ** 2).mean(axis=-1)


def brier_multiclass(one_hot: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Mean over cases of the squared distance between the probability vector and the one-hot
    truth (sum over classes; 0 is perfect, 2 the worst)."""
    return ((probs - one_hot) ** 2).sum(axis=-1).mean(axis=-1)


# ---------------------------------------------------------------------------------------------
# All metrics of a task at once, for a point estimate or a batch of bootstrap resamples.

BINARY_METRICS = (
    "roc_auc", "average_precision", "sensitivity", "specificity", "ppv", "npv", "f1",
    "balanced_accuracy", "accuracy", "log_loss", "brier",
)
PER_CLASS_METRICS = (
    "roc_auc", "average_precision", "sensitivity", "specificity", "ppv", "npv", "f1",
)
MULTICLASS_METRICS = ("macro_roc_auc", "macro_f1", "accuracy", "balanced_accuracy", "log_loss", "brier")

METRIC_LABELS = {
    "roc_auc": "ROC AUC",
    "average_precision": "Average precision",
    "sensitivity": "Sensitivity (recall)",
    "specificity": "Specificity",
    "ppv": "PPV (precision)",
    "npv": "NPV",
    "f1": "F1",
    "balanced_accuracy": "Balanced accuracy",
    "accuracy": "Accuracy",
    "log_loss": "Log loss",
    "brier": "Brier score",
    "macro_roc_auc": "Macro ROC AUC (one-vs-rest)",
    "macro_f1": "Macro F1",
}


def binary_metric_values(y: np.ndarray, positive_scores: np.ndarray,
                         predicted: np.ndarray) -> dict[str, np.ndarray]:
    """Every binary metric (:data:`BINARY_METRICS`); ``y`` and ``predicted`` are 0/1."""
    y = np.asarray(y)
    scores = np.asarray(positive_scores, dtype=float)
    values = threshold_metrics(y, predicted)
    values["roc_auc"] = roc_auc(y, scores)
    values["average_precision"] = average_precision(y, scores)
    values["log_loss"] = log_loss_from_true_probs(np.where(y == 1, scores, 1 - scores))
    values["brier"] = brier_binary(y, scores)
    return {name: values[name] for name in BINARY_METRICS}


def multiclass_metric_values(y: np.ndarray, probs: np.ndarray, predicted: np.ndarray,
                             n_classes: int) -> dict[str, np.ndarray]:
    """Macro metrics (:data:`MULTICLASS_METRICS`) and, under ``"<class index>/<metric>"``, the
    one-vs-rest metrics of each class (:data:`PER_CLASS_METRICS`).

    ``y``/``predicted`` are class indices of shape (..., n); ``probs`` has shape (..., n, K).
    """
    y = np.asarray(y)
    predicted = np.asarray(predicted)
    values: dict[str, np.ndarray] = {}
    for k in range(n_classes):
        is_k = y == k
        per_class = threshold_metrics(is_k, predicted == k)
        per_class["roc_auc"] = roc_auc(is_k, probs[..., k])
        per_class["average_precision"] = average_precision(is_k, probs[..., k])
        for name in PER_CLASS_METRICS:
            values[f"{k}/{name}"] = per_class[name]
    stack = lambda name: np.stack([values[f"{k}/{name}"] for k in range(n_classes)])  # noqa: E731
    one_hot = (y[..., None] == np.arange(n_classes)).astype(float)
    values["macro_roc_auc"] = stack("roc_auc").mean(axis=0)  # NaN if any class's AUC is
    values["macro_f1"] = np.nan_to_num(stack("f1"), nan=0.0).mean(axis=0)  # sklearn: 0 if undefined
    values["accuracy"] = (y == predicted).mean(axis=-1)
    values["balanced_accuracy"] = np.nanmean(stack("sensitivity"), axis=0)  # over classes present
    values["log_loss"] = log_loss_from_true_probs((probs * one_hot).sum(axis=-1))
    values["brier"] = brier_multiclass(one_hot, probs)
    return values
