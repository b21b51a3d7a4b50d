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
from typing import TYPE_CHECKING, Sequence

import numpy as np

from lungcad.errors import LungcadError

if TYPE_CHECKING:  # pragma: no cover
    from lungcad.evaluation.predictions import Predictions

DEFAULT_THRESHOLD = 0.5  # a binary model's cut where none was decided (the one default)
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

# ---------------------------------------------------------------------------------------------
# a model's decision threshold: decided in one place, on validation predictions only

@dataclass(frozen=True)
class ValidationPredictions:
    """Unrounded class probabilities of images that the model did not train on, checked to be
    a validation set: a fold's validation part exactly (never a test image), or the pooled
    out-of-fold predictions of a finished cross-validation. Build one with :meth:`for_fold` or
    :meth:`out_of_fold`; :func:`decide_threshold` accepts nothing else."""

    source: str
    paths: tuple[str, ...]
    y: np.ndarray          # class index of each row
    probs: np.ndarray      # (rows, classes), unrounded
    classes: tuple[str, ...]

    @classmethod
    def for_fold(cls, fold, probs, source: str = "validation part") -> "ValidationPredictions":
        """``probs`` (rows in the order of ``fold.val``) of a :class:`FoldView`'s validation
        part; refused if the fold's validation part holds one of its test images."""
        probs = np.asarray(probs, dtype=np.float64)
        classes = tuple(fold.task.classes)
        if probs.shape != (len(fold.val), len(classes)):
            raise LungcadError(f"{source}: validation probabilities of shape {probs.shape}, "
                               f"expected ({len(fold.val)}, {len(classes)}): one row per "
                               "validation image, one column per class")
        leaked = set(fold.val) & set(fold.test)
        if leaked:
            raise LungcadError(f"{source} holds {len(leaked)} image(s) of fold {fold.fold}'s TEST "
                               f"part (e.g. {sorted(leaked)[:2]}); a threshold is never chosen "
                               "on test images")
        return cls(source, tuple(fold.val), np.asarray(fold.labels("val"), dtype=int), probs,
                   classes)

    @classmethod
    def out_of_fold(cls, table, classes: Sequence[str], source: str) -> "ValidationPredictions":
        """The pooled out-of-fold predictions (path, true_label, prob_<class>...) of a finished
        cross-validation: each row predicted by a model that never saw the image."""
        columns = [f"prob_{c}" for c in classes]
        missing = [c for c in ("path", "true_label", *columns) if c not in table.columns]
        if missing:
            raise LungcadError(f"{source}: missing column(s) {missing}")
        if table["path"].duplicated().any():
            raise LungcadError(f"{source}: an image appears twice; out-of-fold predictions hold "
                               "each image once")
        index = {c: i for i, c in enumerate(classes)}
        unknown = sorted(set(table["true_label"].astype(str)) - set(index))
        if unknown:
            raise LungcadError(f"{source}: true_label {unknown} not among {list(classes)}")
        return cls(source, tuple(table["path"].astype(str)),
                   table["true_label"].astype(str).map(index).to_numpy(dtype=int),
                   table[columns].to_numpy(dtype=np.float64), tuple(classes))


@dataclass(frozen=True)
class ThresholdChoice:
    """A model's decision threshold and how it was decided (stored in threshold.json)."""

    value: float | None      # None: multi-class, the most probable class
    rule: str                # the rule as written (youden, f1, sensitivity:x, a number)
    chosen_on: str           # "validation", or "none" (a fixed number, multi-class, fallback)
    source: str | None
    n_validation: int
    description: str         # for model.json's threshold_rule and model cards

    def to_dict(self) -> dict:
        return {"value": self.value, "rule": self.rule, "chosen_on": self.chosen_on,
                "source": self.source, "n_validation": self.n_validation,
                "description": self.description}


def decide_threshold(validation: ValidationPredictions, rule: str) -> ThresholdChoice:
    """THE place a model's threshold is decided: ``rule`` on validation predictions only.

    Multi-class: none (the most probable class). A data-driven rule that cannot be applied (one
    class only among the validation images) falls back to 0.5 and says so.
    """
    if not isinstance(validation, ValidationPredictions):  # the guarantee is in the type
        raise TypeError("a threshold is chosen on ValidationPredictions only, "
                        f"not {type(validation).__name__}")
    n = len(validation.paths)
    if len(validation.classes) != 2:
        return ThresholdChoice(None, str(rule), "none", None, n,
                               "most probable class (multi-class task)")
    parsed = parse_threshold_rule(rule)
    if not parsed.needs_data:
        return ThresholdChoice(float(parsed.value), parsed.text, "none", None, n,
                               f"fixed {parsed.text}")
    try:
        value = choose_threshold(validation.y, validation.probs[:, 1], parsed)
    except LungcadError as exc:
        return ThresholdChoice(DEFAULT_THRESHOLD, parsed.text, "none", validation.source, n,
                               f"{DEFAULT_THRESHOLD} (rule {parsed.text} failed on {validation.source}: {exc})")
    return ThresholdChoice(float(value), parsed.text, "validation", validation.source, n,
                           f"{parsed.text} on {validation.source} ({n} images)")


# ---------------------------------------------------------------------------------------------
# which threshold a report applies, and where it came from
#
# Which decision threshold a report applies, and where it came from (its provenance).
#
# - ``validation`` (the default when validation predictions are given): the rule ``youden`` is
#   applied to the validation predictions and the threshold is used unchanged on the test set;
# - a rule (``youden``, ``f1``, ``sensitivity:<x>``) with validation predictions: chosen on them;
# - a rule without validation predictions: chosen on the very data it scores, which flatters the
#   result; the report carries a WARNING;
# - a number: applied as is;
# - nothing given: the ``predicted_label`` column as the model wrote it (the model's own threshold).

DEFAULT_VALIDATION_RULE = "youden"
CHOSEN_ON_SCORED_DATA_WARNING = (
    "WARNING: the decision threshold ({rule}) was chosen on the same data it scores, so the "
    "threshold-dependent metrics (sensitivity, specificity, PPV, NPV, F1, accuracy, balanced "
    "accuracy) are optimistic. Choose it on validation predictions (--validation) instead."
)


def _operating_point(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    from lungcad.evaluation.metrics import threshold_metrics

    t = threshold_metrics(y == 1, scores >= threshold)
    return {"n": int(len(y)), "sensitivity": float(t["sensitivity"]),
            "specificity": float(t["specificity"])}


def resolve_threshold(test: Predictions, validation: Predictions | None,
                      threshold: str | None) -> tuple[dict, list[str]]:
    """The threshold record for report.json (``value``, ``rule``, ``chosen_on``, ...) and any
    warnings. ``value`` is None when the model's ``predicted_label`` column is used as given."""
    text = None if threshold is None else str(threshold).strip()
    warnings: list[str] = []
    if not test.binary:
        if text is not None:
            raise LungcadError(
                f"--threshold {text}: a threshold applies to binary tasks only; these predictions "
                f"have {len(test.classes)} classes {list(test.classes)}, scored by their "
                "predicted_label column"
            )
        record = {"value": None, "rule": "model", "chosen_on": "model", "source": None,
                  "description": "multi-class: the predicted_label column as the model wrote it"}
        if validation is not None:
            warnings.append("validation predictions were given but not used: a multi-class "
                            "report scores the predicted_label column")
        return record, warnings

    if text is None:
        if validation is None:
            return _model_threshold(test), warnings
        text = "validation"
    rule_text = DEFAULT_VALIDATION_RULE if text.lower() == "validation" else text
    if text.lower() == "validation" and validation is None:
        raise LungcadError("--threshold validation needs validation predictions: pass "
                           "--validation VAL_PREDICTIONS.csv, or give a rule or a number")
    rule = parse_threshold_rule(rule_text)

    if not rule.needs_data:
        record = {"value": float(rule.value), "rule": "fixed", "chosen_on": "none",
                  "source": None, "description": f"the fixed threshold {rule.value:g}, as given"}
        if validation is not None:
            warnings.append("validation predictions were given but not used: the threshold was "
                            "given as a number")
        return record, warnings

    if validation is not None:
        _check_same_classes(test, validation)
        value = choose_threshold(validation.y, validation.positive_scores, rule)
        return {
            "value": value, "rule": rule.text, "chosen_on": "validation",
            "source": validation.source,
            "description": f"chosen by the rule {rule.text} on the validation predictions "
                           f"{validation.source} and applied unchanged to the test predictions",
            "validation_operating_point": _operating_point(validation.y,
                                                           validation.positive_scores, value),
        }, warnings

    value = choose_threshold(test.y, test.positive_scores, rule)
    warning = CHOSEN_ON_SCORED_DATA_WARNING.format(rule=rule.text)
    warnings.append(warning)
    return {
        "value": value, "rule": rule.text, "chosen_on": "test", "source": test.source,
        "description": f"chosen by the rule {rule.text} on the scored (test) predictions "
                       "themselves: optimistic",
        "warning": warning,
    }, warnings


def _model_threshold(test: Predictions) -> dict:
    """The model's own decisions; say which thresholds on the score they are consistent with."""
    scores = test.positive_scores
    positive = test.predicted == 1
    above_all_negatives = float(scores[~positive].max()) if (~positive).any() else None
    lowest_positive = float(scores[positive].min()) if positive.any() else None
    consistent = (above_all_negatives is None or lowest_positive is None
                  or above_all_negatives < lowest_positive)
    record = {
        "value": None, "rule": "model", "chosen_on": "model", "source": None,
        "description": "the predicted_label column as the model wrote it (the model's own "
                       "threshold, chosen when it was trained)",
        "consistent_with_score_threshold": consistent,
    }
    if consistent:
        record["implied_range"] = {"above": above_all_negatives, "at_most": lowest_positive}
    return record


def _check_same_classes(test: Predictions, validation: Predictions) -> None:
    if test.classes != validation.classes:
        raise LungcadError(
            f"the validation predictions {validation.source} have classes "
            f"{list(validation.classes)} but the test predictions {test.source} have "
            f"{list(test.classes)}; they must come from the same task"
        )
    if validation.y is None:
        raise LungcadError(f"the validation predictions {validation.source} have no true_label "
                           "column, so no threshold can be chosen on them")
