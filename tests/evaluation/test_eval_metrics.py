"""Metrics, calibration and bootstrap intervals: hand-computed cases and scikit-learn/SciPy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from lungcad.evaluation.bootstrap import bootstrap_intervals
from lungcad.evaluation.calibration import expected_calibration_error, reliability_bins
from lungcad.evaluation.metrics import (
    average_precision,
    binary_metric_values,
    brier_binary,
    log_loss_from_true_probs,
    multiclass_metric_values,
    roc_auc,
    threshold_metrics,
)
from lungcad.evaluation.report import evaluate_predictions
from evaluation_synthetic import binary_predictions, multiclass_predictions

# ---------------------------------------------------------------------------------------------
# hand-computed cases


def test_threshold_metrics_by_hand():
    # tp=2, fn=1, fp=1, tn=4
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    predicted = np.array([1, 1, 0, 1, 0, 0, 0, 0])
    m = threshold_metrics(y, predicted)
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(4 / 5)
    assert m["ppv"] == pytest.approx(2 / 3)
    assert m["npv"] == pytest.approx(4 / 5)
    assert m["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert m["accuracy"] == pytest.approx(6 / 8)


def test_undefined_metrics_are_nan_not_made_up():
    y = np.array([1, 0, 0, 1])
    none_predicted = threshold_metrics(y, np.zeros(4, dtype=int))
    assert np.isnan(none_predicted["ppv"])  # no predicted positive
    assert none_predicted["npv"] == pytest.approx(0.5)
    with np.errstate(all="ignore"):
        assert np.isnan(roc_auc(np.zeros(4), np.array([0.1, 0.2, 0.3, 0.4])))
        assert np.isnan(average_precision(np.zeros(4), np.array([0.1, 0.2, 0.3, 0.4])))


def test_auc_average_precision_log_loss_brier_by_hand():
    y = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    # 3 of the 4 positive-negative pairs are ordered right
    assert roc_auc(y, scores) == pytest.approx(0.75)
    # ranked: 0.8 (pos, precision 1/1), 0.4 (neg), 0.35 (pos, precision 2/3), 0.1 (neg)
    assert average_precision(y, scores) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # a tie between a positive and a negative counts one half
    assert roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert log_loss_from_true_probs(np.array([0.8, 0.6])) == pytest.approx(
        -(np.log(0.8) + np.log(0.6)) / 2)
    assert brier_binary(np.array([1, 0]), np.array([0.8, 0.4])) == pytest.approx((0.04 + 0.16) / 2)


def test_ece_and_bins_by_hand():
    confidence = np.array([0.05, 0.15, 0.15, 0.95, 1.0])
    outcome = np.array([0, 1, 0, 1, 1])
    bins = reliability_bins(confidence, outcome)
    assert [b["n"] for b in bins] == [1, 2, 0, 0, 0, 0, 0, 0, 0, 2]  # 1.0 in the last bin
    assert bins[1]["mean_confidence"] == pytest.approx(0.15)
    assert bins[1]["observed_frequency"] == pytest.approx(0.5)
    assert bins[2]["mean_confidence"] is None
    # |0.05-0| * 1/5 + |0.15-0.5| * 2/5 + |0.975-1| * 2/5
    expected = 0.05 / 5 + 0.35 * 2 / 5 + 0.025 * 2 / 5
    assert expected_calibration_error(confidence, outcome) == pytest.approx(expected)
    # perfectly calibrated in every bin: ECE 0
    assert expected_calibration_error(np.array([0.25, 0.25, 0.25, 0.25]),
                                      np.array([1, 0, 0, 0])) == pytest.approx(0.0)


# ---------------------------------------------------------------------------------------------
# against scikit-learn, on random data with ties


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = 157
    y = (rng.random(n) < 0.35).astype(int)
    # rounded scores: many ties, which is where AUC/AP implementations differ
    scores = np.round(np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1), 2)
    predicted = (scores >= 0.5).astype(int)
    m = binary_metric_values(y, scores, predicted)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, scores))
    assert m["average_precision"] == pytest.approx(skm.average_precision_score(y, scores))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, scores, labels=[0, 1]))
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y, scores))
    assert m["f1"] == pytest.approx(skm.f1_score(y, predicted))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, predicted))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, predicted))
    tn, fp, fn, tp = skm.confusion_matrix(y, predicted).ravel()
    assert m["sensitivity"] == pytest.approx(tp / (tp + fn))
    assert m["specificity"] == pytest.approx(tn / (tn + fp))
    assert m["ppv"] == pytest.approx(skm.precision_score(y, predicted))
    assert m["npv"] == pytest.approx(tn / (tn + fn))


def test_log_loss_clips_certain_wrong_answers_like_sklearn():
    y = np.array([1, 0, 1])
    scores = np.array([0.0, 1.0, 1.0])  # two certain, wrong answers
    value = binary_metric_values(y, scores, (scores >= 0.5).astype(int))["log_loss"]
    assert np.isfinite(value)
    assert value == pytest.approx(skm.log_loss(y, scores))


def test_metrics_of_a_batch_equal_metrics_of_each_row():
    """The bootstrap scores (B, n) resamples in one call: each row must equal a 1-D call."""
    rng = np.random.default_rng(3)
    n = 40
    y = (rng.random(n) < 0.4).astype(int)
    scores = np.round(rng.random(n), 1)
    predicted = (scores >= 0.5).astype(int)
    idx = rng.integers(0, n, (6, n))
    with np.errstate(all="ignore"):
        batch = binary_metric_values(y[idx], scores[idx], predicted[idx])
        for b in range(idx.shape[0]):
            row = binary_metric_values(y[idx[b]], scores[idx[b]], predicted[idx[b]])
            for name, values in batch.items():
                np.testing.assert_allclose(values[b], row[name], err_msg=name)


def test_multiclass_metrics_match_sklearn():
    frame = multiclass_predictions(n=180, seed=4)
    classes = ["normal", "benign", "malignant"]
    index = {c: i for i, c in enumerate(classes)}
    y = frame["true_label"].map(index).to_numpy()
    probs = frame[[f"prob_{c}" for c in classes]].to_numpy()
    predicted = frame["predicted_label"].map(index).to_numpy()
    m = multiclass_metric_values(y, probs, predicted, 3)
    assert m["macro_roc_auc"] == pytest.approx(
        skm.roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, predicted, average="macro"))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, predicted))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, predicted))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, probs))
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y, probs))
    precision, recall, f1, _ = skm.precision_recall_fscore_support(y, predicted, labels=[0, 1, 2])
    for k in range(3):
        is_k = (y == k).astype(int)
        assert m[f"{k}/roc_auc"] == pytest.approx(skm.roc_auc_score(is_k, probs[:, k]))
        assert m[f"{k}/average_precision"] == pytest.approx(
            skm.average_precision_score(is_k, probs[:, k]))
        assert m[f"{k}/sensitivity"] == pytest.approx(recall[k])
        assert m[f"{k}/ppv"] == pytest.approx(precision[k])
        assert m[f"{k}/f1"] == pytest.approx(f1[k])
        tn, fp, _, _ = skm.confusion_matrix(is_k, (predicted == k).astype(int)).ravel()
        assert m[f"{k}/specificity"] == pytest.approx(tn / (tn + fp))


def test_multiclass_report_per_class_and_macro_match_sklearn():
    frame = multiclass_predictions(n=150, seed=5)
    report = evaluate_predictions(frame, n_bootstrap=0)
    classes = report["task"]["classes"]
    index = {c: i for i, c in enumerate(classes)}
    y = frame["true_label"].map(index).to_numpy()
    probs = frame[[f"prob_{c}" for c in classes]].to_numpy()
    predicted = frame["predicted_label"].map(index).to_numpy()
    assert set(report["per_class"]) == set(classes)
    assert report["metrics"]["macro_roc_auc"]["value"] == pytest.approx(
        skm.roc_auc_score(y, probs, multi_class="ovr"))
    assert report["metrics"]["macro_f1"]["value"] == pytest.approx(
        skm.f1_score(y, predicted, average="macro"))
    f1 = skm.f1_score(y, predicted, average=None)
    for k, c in enumerate(classes):
        assert report["per_class"][c]["f1"]["value"] == pytest.approx(f1[k])
        assert report["per_class"][c]["roc_auc"]["value"] == pytest.approx(
            skm.roc_auc_score(y == k, probs[:, k]))
    assert report["confusion_matrix"]["counts"] == skm.confusion_matrix(y, predicted).tolist()
    # top-label calibration
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    assert report["calibration"]["ece"] == pytest.approx(
        expected_calibration_error(confidence, correct))


def test_report_binary_metrics_match_sklearn_at_the_applied_threshold():
    frame = binary_predictions(n=160, seed=6, with_metadata=False)
    report = evaluate_predictions(frame, threshold="0.4", n_bootstrap=0)
    y = (frame["true_label"] == "malignant").to_numpy().astype(int)
    scores = frame["prob_malignant"].to_numpy()
    predicted = (scores >= 0.4).astype(int)
    metrics = report["metrics"]
    assert metrics["roc_auc"]["value"] == pytest.approx(skm.roc_auc_score(y, scores))
    assert metrics["f1"]["value"] == pytest.approx(skm.f1_score(y, predicted))
    assert metrics["log_loss"]["value"] == pytest.approx(skm.log_loss(y, scores))
    assert report["confusion_matrix"]["counts"] == skm.confusion_matrix(y, predicted).tolist()
    assert report["calibration"]["ece"] == pytest.approx(
        expected_calibration_error(scores, y))
    assert all(m["ci_low"] is None and m["ci_method"] == "none" for m in metrics.values())


# ---------------------------------------------------------------------------------------------
# bootstrap intervals


def _accuracy_statistic(correct: np.ndarray):
    return lambda idx: {"accuracy": correct[idx].mean(axis=-1)}


def test_bootstrap_interval_equals_scipy_bca_on_the_same_resamples():
    rng = np.random.default_rng(7)
    correct = (rng.random(120) < 0.7).astype(float)
    ours = bootstrap_intervals(len(correct), _accuracy_statistic(correct), 500, seed=11)
    reference = stats.bootstrap((correct,), np.mean, n_resamples=500, method="BCa",
                                rng=np.random.default_rng(11), vectorized=True)
    assert ours["accuracy"].method == "BCa"
    assert ours["accuracy"].low == pytest.approx(reference.confidence_interval.low)
    assert ours["accuracy"].high == pytest.approx(reference.confidence_interval.high)


def test_report_intervals_are_seeded_contain_the_estimate_and_record_the_method():
    frame = binary_predictions(n=150, seed=8, with_metadata=False)
    first = evaluate_predictions(frame, threshold="0.5", n_bootstrap=300, seed=3)
    again = evaluate_predictions(frame, threshold="0.5", n_bootstrap=300, seed=3)
    other = evaluate_predictions(frame, threshold="0.5", n_bootstrap=300, seed=4)
    assert first["metrics"] == again["metrics"]
    assert first["metrics"]["roc_auc"] != other["metrics"]["roc_auc"]
    assert first["bootstrap"]["n_resamples"] == 300 and first["bootstrap"]["seed"] == 3
    assert "scipy.stats.bootstrap" in first["bootstrap"]["method"]
    expected = {"roc_auc", "average_precision", "sensitivity", "specificity", "ppv", "npv", "f1",
                "balanced_accuracy", "accuracy", "log_loss", "brier"}
    assert expected <= set(first["metrics"])
    for name in expected:
        record = first["metrics"][name]
        assert record["ci_method"] in ("BCa", "percentile"), name
        assert record["ci_low"] <= record["value"] <= record["ci_high"], name


def test_intervals_narrow_with_more_data():
    small = binary_predictions(n=80, seed=9, with_metadata=False)
    large = binary_predictions(n=1280, seed=9, with_metadata=False)
    narrow = evaluate_predictions(large, threshold="0.5", n_bootstrap=300, seed=0)["metrics"]
    wide = evaluate_predictions(small, threshold="0.5", n_bootstrap=300, seed=0)["metrics"]
    for name in ("roc_auc", "sensitivity", "specificity", "accuracy", "brier"):
        width_small = wide[name]["ci_high"] - wide[name]["ci_low"]
        width_large = narrow[name]["ci_high"] - narrow[name]["ci_low"]
        # 16x the data: about 4x narrower; ask for clearly narrower
        assert width_large < 0.5 * width_small, name


def test_interval_where_some_resamples_are_undefined():
    """Two positives among 30: some resamples draw no positive, so sensitivity has no value
    there; the interval comes from the defined resamples and says how many were left out."""
    correct_y = np.zeros(30, dtype=int)
    correct_y[:2] = 1
    scores = np.linspace(0.05, 0.95, 30)[::-1]
    predicted = (scores >= 0.5).astype(int)

    def statistic(idx):
        return binary_metric_values(correct_y[idx], scores[idx], predicted[idx])

    with np.errstate(all="ignore"):
        intervals = bootstrap_intervals(30, statistic, 400, seed=0)
    sens = intervals["sensitivity"]
    assert sens.n_undefined > 0
    assert sens.method == "percentile (undefined resamples left out)"
    assert sens.low is not None and 0 <= sens.low <= sens.high <= 1
