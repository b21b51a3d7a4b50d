"""Threshold rules by hand, their errors, and where the threshold a report applies comes from."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lungcad.cli import main
from lungcad.errors import LungcadError
from lungcad.evaluation.report import evaluate_predictions
from lungcad.evaluation.thresholds import choose_threshold, parse_threshold_rule
from evaluation_synthetic import binary_predictions

# candidates (descending) 0.9 0.7 0.6 0.35 0.3 0.1 give
#   tp 1 2 2 3 3 3, fp 0 0 1 1 2 3 (3 positives, 3 negatives)
Y = np.array([0, 0, 1, 0, 1, 1])
S = np.array([0.1, 0.3, 0.35, 0.6, 0.7, 0.9])


@pytest.mark.parametrize("rule, expected", [
    # Youden J: 1/3 2/3 1/3 2/3 1/3 0 -> tie between 0.7 and 0.35, the higher wins
    ("youden", 0.7),
    # F1 = 2tp/(2tp+fp+fn): .5 .8 .667 .857 .75 .667
    ("f1", 0.35),
    ("F1", 0.35),
    # the highest threshold whose sensitivity reaches the target
    ("sensitivity:0.3", 0.9),
    ("sensitivity:0.5", 0.7),
    ("sensitivity:0.9", 0.35),
    ("sensitivity:1", 0.35),
    ("0.42", 0.42),
    (" 0 ", 0.0),
])
def test_rules_by_hand(rule, expected):
    assert choose_threshold(Y, S, rule) == pytest.approx(expected)


def test_sensitivity_target_reached_despite_rounding():
    y = np.array([1] * 10 + [0] * 5)
    s = np.linspace(0.99, 0.5, 15)
    # 9 of 10 positives is exactly 0.9: the 9th positive's score, not the 10th's
    assert choose_threshold(y, s, "sensitivity:0.9") == pytest.approx(s[8])


def test_applying_the_threshold_reproduces_the_chosen_operating_point():
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.3).astype(int)
    s = np.round(np.clip(rng.normal(0.3 + 0.3 * y, 0.2), 0, 1), 2)
    t = choose_threshold(y, s, "sensitivity:0.8")
    sens = ((s >= t) & (y == 1)).sum() / y.sum()
    assert sens >= 0.8
    higher = s[s > t].min()  # the next candidate up misses the target
    assert ((s >= higher) & (y == 1)).sum() / y.sum() < 0.8


@pytest.mark.parametrize("rule", ["youdn", "sensitivity", "sensitivity:", "sensitivity:abc",
                                  "sensitivity:0", "sensitivity:1.5", "1.5", "-0.1", "nan", "",
                                  "inf"])
def test_bad_rules_give_lungcad_error(rule):
    with pytest.raises(LungcadError):
        parse_threshold_rule(rule)
    with pytest.raises(LungcadError):
        choose_threshold(Y, S, rule)


@pytest.mark.parametrize("rule", ["youden", "f1", "sensitivity:0.9"])
@pytest.mark.parametrize("labels", [[0, 0, 0], [1, 1, 1]])
def test_one_class_input_gives_lungcad_error(rule, labels):
    with pytest.raises(LungcadError, match="both classes"):
        choose_threshold(np.array(labels), np.array([0.2, 0.5, 0.7]), rule)


def test_a_fixed_number_needs_no_data_and_bad_arrays_are_rejected():
    assert choose_threshold(np.array([1, 1]), np.array([0.2, 0.3]), "0.5") == 0.5
    with pytest.raises(LungcadError, match="same length"):
        choose_threshold(np.array([0, 1, 1]), np.array([0.2, 0.3]), "youden")
    with pytest.raises(LungcadError, match="0 \\(negative\\) or 1"):
        choose_threshold(np.array([0, 2]), np.array([0.2, 0.3]), "youden")
    with pytest.raises(LungcadError, match="NaN"):
        choose_threshold(np.array([0, 1]), np.array([0.2, np.nan]), "youden")
    with pytest.raises(LungcadError, match="no cases"):
        choose_threshold(np.array([]), np.array([]), "f1")


# ---------------------------------------------------------------------------------------------
# provenance: chosen on validation, applied unchanged to test


def _labels_scores(frame):
    return (frame["true_label"] == "malignant").to_numpy().astype(int), frame["prob_malignant"].to_numpy()


@pytest.mark.parametrize("rule", ["validation", "youden", "f1", "sensitivity:0.8"])
def test_threshold_is_chosen_on_validation_and_applied_unchanged(rule):
    validation = binary_predictions(n=120, seed=21, with_metadata=False)
    test = binary_predictions(n=150, seed=22, with_metadata=False)
    report = evaluate_predictions(test, validation, rule, n_bootstrap=0)
    expected = choose_threshold(*_labels_scores(validation),
                                "youden" if rule == "validation" else rule)
    assert report["threshold"]["value"] == pytest.approx(expected)
    assert report["threshold"]["chosen_on"] == "validation"
    assert not any("same data it scores" in w for w in report["warnings"])

    # other test predictions: the same threshold, different scores under it
    other_test = binary_predictions(n=90, seed=23, separation=0.5, with_metadata=False)
    other = evaluate_predictions(other_test, validation, rule, n_bootstrap=0)
    assert other["threshold"]["value"] == report["threshold"]["value"]
    y, s = _labels_scores(other_test)
    predicted = (s >= expected).astype(int)
    tp = int(((predicted == 1) & (y == 1)).sum())
    assert other["confusion_matrix"]["counts"][1][1] == tp
    assert other["metrics"]["sensitivity"]["value"] == pytest.approx(tp / y.sum())

    # the test set's own optimum is a different threshold: the report did not use it
    if rule != "sensitivity:0.8":
        own = choose_threshold(*_labels_scores(test), "youden" if rule == "validation" else rule)
        assert own != pytest.approx(expected)


def test_validation_file_without_decision_columns_is_accepted(tmp_path):
    """A training run's val_predictions.csv has path, true_label and prob_ columns only."""
    validation = binary_predictions(n=100, seed=31, with_metadata=False)
    validation[["path", "true_label", "prob_rest", "prob_malignant"]].to_csv(
        tmp_path / "val_predictions.csv", index=False, float_format="%.6f")
    binary_predictions(n=120, seed=32).to_csv(tmp_path / "test.csv", index=False)
    status = main(["evaluate", str(tmp_path / "test.csv"), "--validation",
                   str(tmp_path / "val_predictions.csv"), "--bootstrap", "50",
                   "--out", str(tmp_path / "report")])
    assert status == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["threshold"]["chosen_on"] == "validation"
    assert report["threshold"]["value"] == pytest.approx(
        choose_threshold(*_labels_scores(validation), "youden"), abs=1e-6)
    assert report["inputs"]["validation"]["models"] == []


def test_validation_of_other_classes_is_rejected():
    validation = binary_predictions(n=60, seed=1, classes=("normal", "nodule"), with_metadata=False)
    test = binary_predictions(n=60, seed=2, with_metadata=False)
    with pytest.raises(LungcadError, match="same task"):
        evaluate_predictions(test, validation, "youden", n_bootstrap=0)


def test_threshold_validation_without_validation_file_is_an_error():
    with pytest.raises(LungcadError, match="--validation"):
        evaluate_predictions(binary_predictions(n=40), None, "validation", n_bootstrap=0)


# ---------------------------------------------------------------------------------------------
# the warning when a threshold is chosen on the data it scores


def test_warning_when_chosen_on_scored_data_everywhere(tmp_path, capsys):
    binary_predictions(n=120, seed=41).to_csv(tmp_path / "test.csv", index=False)
    out = tmp_path / "report"
    status = main(["evaluate", str(tmp_path / "test.csv"), "--threshold", "f1",
                   "--bootstrap", "50", "--out", str(out)])
    assert status == 0
    stderr = capsys.readouterr().err
    assert "WARNING" in stderr and "chosen on the same data it scores" in stderr
    report = json.loads((out / "report.json").read_text())
    assert report["threshold"]["chosen_on"] == "test"
    assert any(w.startswith("WARNING") and "same data it scores" in w for w in report["warnings"])
    markdown = (out / "report.md").read_text()
    assert "> **WARNING: the decision threshold (f1) was chosen on the same data" in markdown
    page = (out / "report.html").read_text()
    assert '<p class="warning">WARNING: the decision threshold (f1) was chosen on the same' in page


def test_no_warning_for_a_fixed_threshold_or_the_models_labels():
    frame = binary_predictions(n=80, seed=42)
    for threshold in ("0.5", None):
        report = evaluate_predictions(frame, None, threshold, n_bootstrap=0)
        assert not any("same data it scores" in w for w in report["warnings"])
    fixed = evaluate_predictions(frame, None, "0.5", n_bootstrap=0)["threshold"]
    assert fixed["value"] == 0.5 and fixed["chosen_on"] == "none"
    model = evaluate_predictions(frame, None, None, n_bootstrap=0)
    assert model["threshold"]["rule"] == "model"
    # the synthetic model labels at 0.5: the report says which thresholds they match
    implied = model["threshold"]["implied_range"]
    assert implied["above"] < 0.5 <= implied["at_most"]


@pytest.mark.parametrize("rule", ["youden", "f1"])
def test_optimising_rules_agree_with_sklearn_curves(rule):
    from sklearn.metrics import f1_score, roc_curve

    rng = np.random.default_rng(3)
    y = (rng.random(300) < 0.3).astype(int)
    s = np.clip(rng.normal(0.4 + 0.3 * y, 0.2), 0, 1).round(2)  # rounding makes ties
    t = choose_threshold(y, s, rule)
    if rule == "youden":
        fpr, tpr, thr = roc_curve(y, s)
        assert (tpr - fpr)[thr == t][0] == pytest.approx((tpr - fpr).max())
    else:
        best = max(f1_score(y, s >= c) for c in np.unique(s))
        assert f1_score(y, s >= t) == pytest.approx(best)


def test_parse_gives_canonical_text():
    assert parse_threshold_rule("Youden").text == "youden"
    assert parse_threshold_rule("sensitivity:0.90").text == "sensitivity:0.9"
    assert parse_threshold_rule("0.50").text == "0.5"
    assert not parse_threshold_rule("0.5").needs_data
    assert parse_threshold_rule("f1").needs_data
