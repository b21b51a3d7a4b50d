"""Which decision threshold a report applies, and where it came from (its provenance).

- ``validation`` (the default when validation predictions are given): the rule ``youden`` is
  applied to the validation predictions and the threshold is used unchanged on the test set;
- a rule (``youden``, ``f1``, ``sensitivity:<x>``) with validation predictions: chosen on them;
- a rule without validation predictions: chosen on the very data it scores, which flatters the
  result; the report carries a WARNING;
- a number: applied as is;
- nothing given: the ``predicted_label`` column as the model wrote it (the model's own threshold).
"""

from __future__ import annotations

import numpy as np

from lungcad.errors import LungcadError
from lungcad.evaluation.metrics import threshold_metrics
from lungcad.evaluation.predictions import Predictions
from lungcad.evaluation.thresholds import choose_threshold, parse_threshold_rule

DEFAULT_VALIDATION_RULE = "youden"
CHOSEN_ON_SCORED_DATA_WARNING = (
    "WARNING: the decision threshold ({rule}) was chosen on the same data it scores, so the "
    "threshold-dependent metrics (sensitivity, specificity, PPV, NPV, F1, accuracy, balanced "
    "accuracy) are optimistic. Choose it on validation predictions (--validation) instead."
)


def _operating_point(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
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
