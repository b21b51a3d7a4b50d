"""Every written table agrees with itself: the labels (and the in-domain flag) follow from the
values as written. Probabilities exactly on, and within 1e-9 of, the model's threshold (binary) or
of each other (multi-class) are written, read back, and decided again from the file alone."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from lungcad.detection.batch import write_findings
from lungcad.evaluation.predictions import read_predictions
from lungcad.lung_model import LungModel
from lungcad.model_dir import ModelSpec
from lungcad.prediction import PredictionInput, prediction_table, write_predictions

THRESHOLD = 0.4841090738773346  # the stored threshold that set off issue 22, as threshold.json had it


def _model(classes: tuple[str, ...], threshold: float | None):
    """A stand-in with what the decision and the table need (the network plays no part)."""
    spec = SimpleNamespace(name="m", version="1", threshold=threshold, binary=len(classes) == 2)
    spec.decision_threshold = ModelSpec.decision_threshold.fget(spec)
    model = SimpleNamespace(spec=spec, classes=list(classes))
    model.decide = lambda probs: LungModel.decide(model, probs)
    return model


def _near(value: float) -> list[float]:
    return [value, value - 1e-9, value + 1e-9, value - 1e-12, value + 1e-12,
            float(np.nextafter(value, 0)), float(np.nextafter(value, 1))]


def _written_and_read(model, probs: np.ndarray, tmp_path) -> pd.DataFrame:
    keys = [f"case{i:02d}.png" for i in range(len(probs))]
    inp = PredictionInput(files=[tmp_path / k for k in keys], keys=keys)
    table = prediction_table(model, inp, range(len(probs)), probs)
    written = write_predictions(table, tmp_path / "predictions.csv")
    return read_predictions(written)


def test_binary_labels_follow_the_written_probabilities_at_the_threshold(tmp_path):
    model = _model(("rest", "malignant"), THRESHOLD)
    p = np.array(_near(THRESHOLD))
    back = _written_and_read(model, np.stack([1 - p, p], axis=1), tmp_path)
    redecided = np.where(back["prob_malignant"] >= THRESHOLD, "malignant", "rest")
    assert back["predicted_label"].tolist() == redecided.tolist()
    assert back["prob_malignant"].tolist() == p.tolist()  # read back bit for bit
    # both sides of the threshold occur, so a file rounded to fewer digits would disagree
    assert {"malignant", "rest"} <= set(back["predicted_label"])


@pytest.mark.parametrize("threshold", [None, 0.5])
def test_default_threshold_is_decided_the_same_way(tmp_path, threshold):
    model = _model(("no_nodule", "nodule"), threshold)
    p = np.array(_near(0.5))
    back = _written_and_read(model, np.stack([1 - p, p], axis=1), tmp_path)
    assert back["predicted_label"].tolist() == np.where(
        back["prob_nodule"] >= 0.5, "nodule", "no_nodule").tolist()


def test_multiclass_argmax_follows_the_written_probabilities(tmp_path):
    classes = ("normal", "benign", "malignant")
    model = _model(classes, None)
    rows = []
    for delta in (0.0, 1e-9, -1e-9, 1e-12, -1e-12):  # two classes within delta of each other
        a = 0.4 + delta
        rows.append([a, 0.4, 1 - a - 0.4])
        rows.append([0.2, 1 - 0.2 - a, a])
    back = _written_and_read(model, np.array(rows), tmp_path)
    written = back[[f"prob_{c}" for c in classes]].to_numpy()
    assert back["predicted_label"].tolist() == [classes[i] for i in written.argmax(axis=1)]
    assert np.array_equal(written, np.array(rows))


def test_findings_scores_are_written_unrounded(tmp_path):
    scores = _near(0.3)
    table = pd.DataFrame({"path": "a.png", "x": 10.5, "y": 20.25, "radius_mm": 5.0,
                          "score": scores, "malignancy": scores, "frame_size": 512,
                          "model": "m@1"})
    back = pd.read_csv(write_findings(table, tmp_path / "findings.csv"))
    assert back["score"].tolist() == scores and back["malignancy"].tolist() == scores
