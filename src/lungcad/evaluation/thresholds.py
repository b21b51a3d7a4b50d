"""Decision thresholds for binary classifiers, chosen by a named rule.

Convention everywhere in lungcad: a case is predicted positive when ``score >= threshold``,
where ``score`` is the probability of the positive class. Data-driven rules return one of the
observed scores, so applying the returned threshold to the same data reproduces exactly the
operating point the rule picked. Among tied candidates the highest threshold wins (the most
conservative one), so the choice is deterministic.

Rules (text form, as the CLI and config files write them):

- ``youden``: maximise sensitivity + specificity - 1 on the ROC curve;
- ``f1``: maximise F1 of the positive class;
- ``sensitivity:<x>``: the highest threshold whose sensitivity is at least ``x`` (0 < x <= 1);
- a number such as ``0.5``: that threshold, as is (needs no data).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lungcad.errors import LungcadError

RULE_HELP = "youden, f1, sensitivity:<x> with 0 < x <= 1, or a number in [0, 1] such as 0.5"


@dataclass(frozen=True)
class ThresholdRule:
    """A parsed threshold rule. ``kind`` is youden, f1, sensitivity or fixed."""

    kind: str
    value: float | None = None  # target sensitivity, or the fixed threshold

    @property
    def needs_data(self) -> bool:
        return self.kind != "fixed"

    @property
    def text(self) -> str:
        if self.kind == "sensitivity":
            return f"sensitivity:{self.value:g}"
        if self.kind == "fixed":
            return f"{self.value:g}"
        return self.kind


def parse_threshold_rule(text: str) -> ThresholdRule:
    """Parse a rule's text form; raise :class:`LungcadError` if it is not one of the rules."""
    raw = str(text).strip()
    lowered = raw.lower()
    if lowered in ("youden", "f1"):
        return ThresholdRule(lowered)
    if lowered.startswith("sensitivity:"):
        target_text = lowered.split(":", 1)[1]
        try:
            target = float(target_text)
        except ValueError:
            raise LungcadError(
                f"threshold rule {raw!r}: {target_text!r} is not a number; use e.g. sensitivity:0.9"
            ) from None
        if not 0.0 < target <= 1.0:
            raise LungcadError(
                f"threshold rule {raw!r}: the target sensitivity must be in (0, 1], e.g. "
                "sensitivity:0.9"
            )
        return ThresholdRule("sensitivity", target)
    try:
        value = float(raw)
    except ValueError:
        raise LungcadError(f"unknown threshold rule {raw!r}; use {RULE_HELP}") from None
    if not np.isfinite(value) or not 0.0 <= value <= 1.0:
        raise LungcadError(
            f"threshold {raw!r} is outside [0, 1]; a threshold applies to a probability"
        )
    return ThresholdRule("fixed", value)


def _check_inputs(y_true: np.ndarray, scores: np.ndarray, rule: ThresholdRule) -> tuple:
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=float)
    if y.ndim != 1 or s.ndim != 1 or len(y) != len(s):
        raise LungcadError(
            f"threshold rule {rule.text}: labels and scores must be two 1-D arrays of the same "
            f"length (got shapes {y.shape} and {s.shape})"
        )
    if len(y) == 0:
        raise LungcadError(f"threshold rule {rule.text}: no cases to choose a threshold on")
    if not np.isin(y, (0, 1)).all():
        raise LungcadError(f"threshold rule {rule.text}: labels must be 0 (negative) or 1 (positive)")
    if not np.isfinite(s).all():
        raise LungcadError(f"threshold rule {rule.text}: scores contain NaN or infinite values")
    n_pos = int((y == 1).sum())
    if n_pos == 0 or n_pos == len(y):
        present = "positive" if n_pos else "negative"
        raise LungcadError(
            f"threshold rule {rule.text} needs both classes, but all {len(y)} case(s) are "
            f"{present}; choose the threshold on data with both classes or give a number "
            "such as 0.5"
        )
    return y.astype(int), s


def _operating_points(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(candidate thresholds descending, true positives, false positives) at ``score >= t``."""
    thresholds = np.unique(s)[::-1]
    order = np.argsort(-s, kind="mergesort")
    sorted_scores, sorted_y = s[order], y[order]
    # number of cases with score >= t for each candidate t
    n_at_or_above = np.searchsorted(-sorted_scores, -thresholds, side="right")
    cum_tp = np.concatenate([[0], np.cumsum(sorted_y)])
    tp = cum_tp[n_at_or_above]
    fp = n_at_or_above - tp
    return thresholds, tp, fp


def choose_threshold(y_true: np.ndarray, scores: np.ndarray, rule: str | ThresholdRule) -> float:
    """The threshold that ``rule`` picks on these labels (0/1) and positive-class scores.

    A fixed-number rule returns its number whatever the data. The data-driven rules need both
    classes present and raise :class:`LungcadError` otherwise.
    """
    parsed = rule if isinstance(rule, ThresholdRule) else parse_threshold_rule(rule)
    if parsed.kind == "fixed":
        return float(parsed.value)
    y, s = _check_inputs(y_true, scores, parsed)
    thresholds, tp, fp = _operating_points(y, s)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    sensitivity = tp / n_pos
    if parsed.kind == "youden":
        objective = sensitivity - fp / n_neg
    elif parsed.kind == "f1":
        objective = 2 * tp / (2 * tp + fp + (n_pos - tp))
    else:  # sensitivity target; a tiny tolerance so 0.9 reaches 9/10 despite rounding
        reaching = np.flatnonzero(sensitivity >= parsed.value - 1e-12)
        return float(thresholds[reaching[0]])  # thresholds descend: first is highest
    # ties within rounding (2/3 vs 1 - 1/3) go to the first, i.e. highest, threshold
    best = np.flatnonzero(objective >= objective.max() - 1e-12)[0]
    return float(thresholds[best])
