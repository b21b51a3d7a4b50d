"""The linear_probe trainer (frozen ImageNet Lite0 + logistic regression) and
`lungcad experiment --final` (the model to ship), on a synthetic dataset."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from experiment_data import make_dataset

import lungcad.training.linear_probe as linear_probe
from lungcad.cli import main
from lungcad.evaluation.thresholds import choose_threshold
from lungcad import load_model


def _sklearn_pipeline(n_classes: int):
    rng = np.random.default_rng(0)
    y = np.arange(90) % n_classes
    features = rng.normal(size=(90, 12)) * rng.uniform(0.5, 5, 12) + rng.uniform(-3, 3, 12)
    features[:, 0] += 2.0 * y
    cfg = {**linear_probe.DEFAULTS, "Cs": [0.1, 1.0], "inner_folds": 3}
    return linear_probe.fit_regression(features, y, cfg), features


@pytest.mark.parametrize("n_classes", [2, 3])
def test_regression_becomes_one_linear_layer(n_classes):
    pipeline, features = _sklearn_pipeline(n_classes)
    weight, bias = linear_probe.regression_as_linear(pipeline)
    logits = torch.from_numpy(features.astype(np.float32)) @ torch.from_numpy(weight).T + torch.from_numpy(bias)
    from lungcad.models import logits_to_probs

    probs = logits_to_probs(logits).numpy()
    np.testing.assert_allclose(probs, pipeline.predict_proba(features), atol=1e-4)


def _config(tmp_path, dataset, split, **extra):
    keys = {"trainer": "linear_probe", "dataset": str(dataset), "split": str(split),
            "task": "jsrt-malignant", "image_size": 64, "Cs": [0.1, 1.0], "inner_folds": 2,
            "threshold": "youden", "modality": "chest radiograph", "localisation": True, **extra}
    path = tmp_path / "probe.yaml"
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in keys.items()))
    return path


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("probe")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LUNGCAD_CACHE_DIR", str(tmp_path / "cache"))
        yield _run_probe(tmp_path)


def _run_probe(tmp_path):
    dataset, split = make_dataset(tmp_path / "synth", n=30, size=64)
    config = _config(tmp_path, dataset, split)
    out = tmp_path / "exp"
    cv_status = main(["experiment", str(config), "--out", str(out), "--bootstrap", "50"])
    final_status = main(["experiment", str(config), "--out", str(out), "--final",
                         "--name", "probe-final"])
    return {"out": out, "config": config, "dataset": dataset, "split": split,
            "status": (cv_status, final_status), "tmp": tmp_path}


def test_experiment_and_final_model_run(probed):
    assert probed["status"] == (0, 0)
    assert (probed["out"] / "final" / "model" / "model.json").is_file()
    assert not (probed["out"] / "final" / "fit").exists()  # the scratch fit is removed


def test_final_model_trains_on_every_image_and_stores_only_its_classifier(probed):
    model_dir = probed["out"] / "final" / "model"
    spec = json.loads((model_dir / "model.json").read_text())
    assert spec["name"] == "probe-final"
    assert spec["metrics"]["n_train"] == 30
    assert spec["weights_base"] == "pretrained" and spec["architecture_args"]["pretrained"]
    stored = torch.load(model_dir / "weights.pt", weights_only=True)
    assert sorted(stored) == ["backbone._fc.bias", "backbone._fc.weight"]


def test_final_threshold_is_the_rule_on_out_of_fold_predictions(probed):
    oof = pd.read_csv(probed["out"] / "oof_predictions.csv")
    expected = choose_threshold((oof["true_label"] == "malignant").to_numpy(int),
                                oof["prob_malignant"].to_numpy(), "youden")
    model = load_model(probed["out"] / "final" / "model")
    # the rule's cut on the uncalibrated probability, moved to the calibrated scale (issue 15)
    from lungcad.evaluation.calibration import calibrated_threshold

    assert model.spec.calibration["threshold_uncalibrated"] == pytest.approx(expected)
    assert model.spec.threshold == pytest.approx(
        calibrated_threshold(expected, model.spec.calibration))
    assert "out-of-fold" in model.spec.threshold_rule


def test_final_model_card_holds_the_cross_validated_figures(probed):
    card = (probed["out"] / "final" / "model" / "MODEL_CARD.md").read_text()
    report = json.loads((probed["out"] / "report" / "report.json").read_text())
    auc = report["metrics"]["roc_auc"]
    assert "research software, not a medical device" in card.lower()
    assert f"| roc_auc | {auc['value']:.3f} [{auc['ci_low']:.3f}, {auc['ci_high']:.3f}] |" in card
    assert "--final --name probe-final" in card
    loc = json.loads((probed["out"] / "summary.json").read_text())["localisation"]["overall"]
    assert "## Where it looks" in card
    assert f"\n{loc['peak_hit']['hits']} of {loc['n']} images" in card


def test_final_model_predicts_as_its_regression(probed):
    """The saved network's probabilities are the logistic regression's on its own features."""
    model = load_model(probed["out"] / "final" / "model")
    from lungcad.data.manifest import Manifest

    manifest = Manifest.load(probed["dataset"])
    paths = manifest.paths[:4]
    feats = linear_probe.features_for(model.network, manifest, paths, model.spec.preprocessing)
    fc = model.network.backbone._fc
    with torch.no_grad():
        direct = torch.sigmoid(fc(torch.from_numpy(feats))).numpy()[:, 0]
    direct = model.calibrate(np.stack([1 - direct, direct], axis=1))[:, 1]  # as stored (issue 15)
    predicted = [model.predict(manifest.image_path(p)).probabilities["malignant"] for p in paths]
    np.testing.assert_allclose(predicted, direct, atol=1e-5)


def test_features_are_cached_on_disk(probed, monkeypatch):
    from lungcad.data.manifest import Manifest

    manifest = Manifest.load(probed["dataset"])
    model = load_model(probed["out"] / "final" / "model")
    paths = ["images/case000.png", "images/case001.png"]
    first = linear_probe.features_for(model.network, manifest, paths, model.spec.preprocessing)
    linear_probe._FEATURE_MEMO.clear()

    def refuse(*_):
        raise AssertionError("features computed again instead of read from the cache")

    monkeypatch.setattr(linear_probe, "pooled_features", refuse)
    again = linear_probe.features_for(model.network, manifest, paths, model.spec.preprocessing)
    np.testing.assert_array_equal(first, again)


def test_final_needs_a_finished_cross_validation(probed, tmp_path, capsys):
    status = main(["experiment", str(probed["config"]), "--out", str(tmp_path / "none"), "--final"])
    assert status == 2 and "cross-validate first" in capsys.readouterr().err


def test_final_refuses_another_recipe(probed, capsys):
    status = main(["experiment", str(probed["config"]), "--out", str(probed["out"]), "--final",
                   "--set", "Cs=[0.5]"])
    assert status == 2 and "another config" in capsys.readouterr().err


def test_final_refuses_the_lightning_trainer(tmp_path, capsys):
    from experiment_data import write_config

    dataset, split = make_dataset(tmp_path / "synth", n=12)
    config = write_config(tmp_path / "c.yaml", dataset, split)
    status = main(["experiment", str(config), "--out", str(tmp_path / "x"), "--final"])
    assert status == 2 and "lightning" in capsys.readouterr().err


def test_name_without_final_is_an_error(probed, capsys):
    status = main(["experiment", str(probed["config"]), "--out", str(probed["out"]),
                   "--name", "x"])
    assert status == 2 and "--final" in capsys.readouterr().err
