"""Calibration (issue 15): the maps, and that they are fitted on out-of-fold predictions only."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lungcad.calibration_map import apply_calibration
from lungcad.evaluation.calibration import (calibrated_threshold, calibration_scores,
                                            crossfit_calibration,
                                            fit_calibration)


def _overconfident_binary(n=2000, seed=0, sharpen=3.0):
    rng = np.random.default_rng(seed)
    true_p = rng.uniform(0.05, 0.95, n)
    y = (rng.random(n) < true_p).astype(int)
    logit = np.log(true_p / (1 - true_p)) * sharpen
    p = 1 / (1 + np.exp(-logit))
    return np.stack([1 - p, p], axis=1), y


def test_platt_undoes_overconfidence_and_keeps_the_verdicts():
    probs, y = _overconfident_binary()
    cal = fit_calibration(probs, y)
    assert cal["method"] == "platt" and cal["a"] == pytest.approx(1 / 3, abs=0.05)
    after = apply_calibration(probs, cal)
    assert calibration_scores(after, y)["ece"] < calibration_scores(probs, y)["ece"] / 3
    t = 0.7
    assert ((probs[:, 1] >= t) == (after[:, 1] >= calibrated_threshold(t, cal))).all()


def test_temperature_scaling_multiclass():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3000, 3)) * 2
    true = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(3, p=p) for p in true])
    sharp = np.exp(logits * 2.5) / np.exp(logits * 2.5).sum(1, keepdims=True)
    cal = fit_calibration(sharp, y)
    assert cal["method"] == "temperature" and cal["temperature"] == pytest.approx(2.5, rel=0.1)
    after = apply_calibration(sharp, cal)
    assert np.allclose(after.sum(1), 1) and (after.argmax(1) == sharp.argmax(1)).all()
    assert calibration_scores(after, y)["ece"] < 0.03


def test_crossfit_never_uses_the_fold_it_calibrates():
    """Fold 0's calibrated probabilities depend only on the other folds: changing fold 0's
    own labels (as if its test predictions were used to fit) must change nothing there."""
    probs, y = _overconfident_binary(n=1000)
    folds = np.arange(len(y)) % 5
    before = crossfit_calibration(probs, y, folds)
    y2 = y.copy()
    y2[folds == 0] = 1 - y2[folds == 0]
    after = crossfit_calibration(probs, y2, folds)
    assert np.array_equal(before[folds == 0], after[folds == 0])
    assert not np.allclose(before[folds == 1], after[folds == 1])


def test_model_calibration_is_fitted_on_the_out_of_fold_file_only(tmp_path):
    """The map of a model directory comes from oof_predictions.csv (each image predicted by a
    fold model that never saw it), not from the final model's in-sample predictions, which
    another file in the experiment holds here and which would give another map."""
    from lungcad.domain.fit import fit_model_calibration

    probs, y = _overconfident_binary(n=600)
    classes = ["normal", "abnormal"]
    frame = pd.DataFrame({"path": [f"i{i}.png" for i in range(len(y))],
                          "true_label": [classes[k] for k in y],
                          "prob_normal": probs[:, 0], "prob_abnormal": probs[:, 1],
                          "predicted_label": [classes[int(p >= 0.5)] for p in probs[:, 1]],
                          "model": "m@1", "fold": np.arange(len(y)) % 5})
    frame.to_csv(tmp_path / "oof_predictions.csv", index=False)
    in_sample = frame.copy()  # a perfectly separating, overfitted final model
    in_sample["prob_abnormal"] = np.where(y == 1, 0.99, 0.01)
    in_sample["prob_normal"] = 1 - in_sample["prob_abnormal"]
    (tmp_path / "final").mkdir()
    in_sample.to_csv(tmp_path / "final" / "train_predictions.csv", index=False)
    cal = fit_model_calibration({"classes": classes}, tmp_path)
    expected = fit_calibration(probs, y)
    assert cal["a"] == pytest.approx(expected["a"], abs=1e-6)
    assert cal["b"] == pytest.approx(expected["b"], abs=1e-6)
    assert "out-of-fold" in cal["fitted_on"]
    assert cal["ece_after_out_of_fold"] < cal["ece_before"]
    frame.drop(columns="fold").to_csv(tmp_path / "oof_predictions.csv", index=False)
    with pytest.raises(Exception, match="fold"):
        fit_model_calibration({"classes": classes}, tmp_path)


def test_the_card_section_is_replaced_and_other_sections_kept():
    from lungcad.domain.fit import CARD_HEADING, replace_card_section

    card = f"# m\n\n## A\n\ntext\n\n{CARD_HEADING}\n\nold\n\n## External validation\n\nkeep\n"
    new = replace_card_section(card, f"{CARD_HEADING}\n\nnew\n")
    assert "keep" in new and "old" not in new and new.count(CARD_HEADING) == 1
    assert new.index("new") < new.index("## External validation")
    assert replace_card_section("# m\n", f"{CARD_HEADING}\n\nx\n").endswith("x\n")


def _calibrated(n, classes, seed):
    """Probabilities (n, classes) and outcomes drawn from them: calibrated by construction."""
    probs = np.random.default_rng(seed).dirichlet(np.ones(classes), size=n)
    return probs, _draw(probs, seed + 1)


def _draw(probs, seed):
    rng = np.random.default_rng(seed)
    return np.array([rng.choice(probs.shape[1], p=p) for p in probs])


@pytest.mark.parametrize("classes", [2, 3])
def test_the_ece_floor_is_what_a_calibrated_model_shows_and_shrinks_with_more_images(classes):
    from lungcad.evaluation.calibration import ece_noise_floor

    probs, _ = _calibrated(200, classes, seed=0)
    floor = ece_noise_floor(probs, n_simulations=400, seed=1)
    # Other calibrated draws of the same 200 images land around the floor, mostly below its p95.
    measured = [calibration_scores(probs, _draw(probs, seed))["ece"] for seed in range(100, 200)]
    assert np.mean(measured) == pytest.approx(floor["mean"], rel=0.15)
    assert 0.90 <= np.mean(np.array(measured) <= floor["p95"]) <= 1.0
    assert floor["mean"] > 0.02  # 200 images: binned ECE is far from zero even when calibrated
    big, _ = _calibrated(5000, classes, seed=0)
    assert ece_noise_floor(big, n_simulations=100)["mean"] < floor["mean"] / 3
