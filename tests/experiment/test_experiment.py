"""`lungcad experiment` end to end on a synthetic dataset with a 3-fold split (tiny model, one
epoch): the files, the out-of-fold pool, mean ± SD, resuming, --folds, and the rule that no
threshold is ever chosen on test predictions."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from experiment_data import make_dataset, write_config

import lungcad.evaluation.thresholds
import lungcad.prediction
import lungcad.training.fit
from lungcad.cli import main


def install_spies(mp, calls: list, trainings: list) -> None:
    """Record every call of choose_threshold and decide_threshold, and every training."""
    thresholds = lungcad.evaluation.thresholds
    original_choose, original_decide = thresholds.choose_threshold, thresholds.decide_threshold

    def choose_spy(y, scores, rule):
        calls.append(("choose_threshold", np.asarray(scores, dtype=float).copy()))
        return original_choose(y, scores, rule)

    def decide_spy(validation, rule):
        calls.append(("decide_threshold", np.asarray(validation.probs[:, 1]).copy()))
        return original_decide(validation, rule)

    mp.setattr(thresholds, "choose_threshold", choose_spy)
    mp.setattr(thresholds, "decide_threshold", decide_spy)
    original_train = lungcad.training.fit.train

    def train_spy(config, out_dir, *, fold=None, resume=True, log=print):
        trainings.append((fold, resume))
        return original_train(config, out_dir, fold=fold, resume=resume, log=log)

    mp.setattr(lungcad.training.fit, "train", train_spy)


def run_experiment_cli(config: Path, out: Path, *extra) -> int:
    return main(["experiment", str(config), "--out", str(out), "--bootstrap", "50", *map(str, extra)])


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """One 3-fold experiment (with localisation), every threshold choice and training spied."""
    root = tmp_path_factory.mktemp("experiment")
    calls: list = []
    trainings: list = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LUNGCAD_CACHE_DIR", str(root / "cache"))
        dataset, split = make_dataset(root / "synth")
        config = write_config(root / "configs" / "tiny.yaml", dataset, split, localisation=True)
        install_spies(mp, calls, trainings)
        status = run_experiment_cli(config, root / "out")
    return {"status": status, "out": root / "out", "config": config, "dataset": dataset,
            "split": split, "calls": calls, "trainings": trainings, "root": root}


def split_parts(split: Path) -> list[dict]:
    return json.loads(split.read_text())["folds"]


def test_every_file_is_written(experiment):
    assert experiment["status"] == 0
    out = experiment["out"]
    for name in ("meta.json", "config.yaml", "oof_predictions.csv", "summary.json", "summary.md",
                 "report/report.json", "report/report.md", "report/report.html"):
        assert (out / name).is_file(), name
    for k in range(3):
        for name in ("test_predictions.csv", "val_predictions.csv", "threshold.json",
                     "localisation.json", "model/model.json", "checkpoints/last.ckpt"):
            assert (out / f"fold-{k}" / name).is_file(), (k, name)
    assert experiment["trainings"] == [(0, True), (1, True), (2, True)]


def test_each_fold_predicts_exactly_its_test_part(experiment):
    out = experiment["out"]
    for k, part in enumerate(split_parts(experiment["split"])):
        test = pd.read_csv(out / f"fold-{k}" / "test_predictions.csv")
        assert sorted(test["path"]) == sorted(part["test"])
        assert (test["fold"] == k).all()
        val = pd.read_csv(out / f"fold-{k}" / "val_predictions.csv")
        assert sorted(val["path"]) == sorted(part["val"])


def test_oof_has_every_test_row_exactly_once(experiment):
    oof = pd.read_csv(experiment["out"] / "oof_predictions.csv")
    parts = split_parts(experiment["split"])
    all_test = [p for part in parts for p in part["test"]]
    assert len(oof) == len(all_test) == 30
    assert not oof["path"].duplicated().any()
    assert set(oof["path"]) == set(all_test)
    fold_of = {p: k for k, part in enumerate(parts) for p in part["test"]}
    assert (oof["fold"] == oof["path"].map(fold_of)).all()
    # metadata travels with the rows, for subgroup tables
    labels = pd.read_csv(experiment["dataset"] / "labels.csv").set_index("path")
    assert (oof["sex"] == oof["path"].map(labels["sex"])).all()


def test_summary_has_per_fold_mean_sd_beside_pooled(experiment):
    out = experiment["out"]
    summary = json.loads((out / "summary.json").read_text())
    per_fold_accuracy, per_fold_sensitivity = [], []
    for k in range(3):
        test = pd.read_csv(out / f"fold-{k}" / "test_predictions.csv")
        threshold = json.loads((out / f"fold-{k}" / "threshold.json").read_text())["value"]
        predicted = np.where(test["prob_malignant"] >= threshold, "malignant", "rest")
        assert (test["predicted_label"] == predicted).all()  # decided at the fold's own threshold
        per_fold_accuracy.append(float((test["predicted_label"] == test["true_label"]).mean()))
        positives = test["true_label"] == "malignant"
        per_fold_sensitivity.append(float((predicted[positives] == "malignant").mean()))
    stats = summary["per_fold_mean_sd"]
    assert set(stats) == {"accuracy", "roc_auc", "log_loss", "sensitivity", "specificity"}
    assert stats["accuracy"]["mean"] == pytest.approx(np.mean(per_fold_accuracy))
    assert stats["accuracy"]["sd"] == pytest.approx(np.std(per_fold_accuracy, ddof=1))
    assert stats["sensitivity"]["values"] == pytest.approx(per_fold_sensitivity)
    oof = pd.read_csv(out / "oof_predictions.csv")
    pooled_accuracy = float((oof["predicted_label"] == oof["true_label"]).mean())
    assert summary["pooled"]["accuracy"]["value"] == pytest.approx(pooled_accuracy)
    assert summary["pooled"]["accuracy"]["ci_low"] is not None
    assert summary["n_out_of_fold"] == 30 and summary["folds_run"] == 3
    markdown = (out / "summary.md").read_text()
    assert "per-fold mean ± SD" in markdown
    assert f"{stats['accuracy']['mean']:.3f} ± {stats['accuracy']['sd']:.3f}" in markdown
    report = (out / "report" / "report.md").read_text()
    assert "Cross-validation folds" in report and "Localisation (out of fold)" in report


def test_localisation_is_scored_out_of_fold(experiment):
    out = experiment["out"]
    labels = pd.read_csv(experiment["dataset"] / "labels.csv")
    with_position = set(labels.loc[labels["x_512"].notna(), "path"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["localisation"]["overall"]["n"] == len(with_position) == 20
    for k, part in enumerate(split_parts(experiment["split"])):
        result = json.loads((out / f"fold-{k}" / "localisation.json").read_text())
        scored = {r["path"] for r in result["per_image"]}
        assert scored == with_position & set(part["test"])  # each fold scores its own test part


def test_meta_records_command_config_split_and_versions(experiment):
    meta = json.loads((experiment["out"] / "meta.json").read_text())
    assert meta["command"].startswith(f"lungcad experiment {experiment['config']} --out ")
    assert meta["split"]["sha256"] == hashlib.sha256(experiment["split"].read_bytes()).hexdigest()
    assert meta["config"]["model"] == "paper-cnn-lstm" and meta["config"]["epochs"] == 1
    assert meta["config"]["dataset"] == str(experiment["dataset"].resolve())
    assert meta["options"]["localisation"] is True
    assert meta["versions"]["torch"] == importlib.metadata.version("torch")
    assert meta["status"] == "finished"


# ---------------------------------------------------------------------------------------------
# THE RULE: no threshold is ever chosen on test predictions

def test_threshold_choices_only_ever_saw_validation_scores(experiment):
    out = experiment["out"]
    calls = experiment["calls"]
    val = [np.sort(pd.read_csv(out / f"fold-{k}" / "val_predictions.csv")["prob_malignant"])
           for k in range(3)]
    test = [np.sort(pd.read_csv(out / f"fold-{k}" / "test_predictions.csv")["prob_malignant"])
            for k in range(3)]
    # each fold's threshold was decided once, on its validation predictions (one rule applied
    # once); evaluating the pooled test predictions chose none
    assert sorted(where for where, _ in calls) == (["choose_threshold"] * 3
                                                   + ["decide_threshold"] * 3)
    for where, scores in calls:
        scores = np.sort(scores)
        matches_val = [len(v) == len(scores) and np.allclose(v, scores, atol=1e-5) for v in val]
        assert sum(matches_val) == 1, where
        assert not any(len(t) == len(scores) and np.allclose(t, scores, atol=1e-5) for t in test)
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["threshold"]["chosen_on"] != "test"
    for k in range(3):
        record = json.loads((out / f"fold-{k}" / "threshold.json").read_text())
        assert record["chosen_on"] == "validation" and record["rule"] == "youden"
        assert record["source"].endswith(f"fold-{k}/val_predictions.csv")
        model = json.loads((out / f"fold-{k}" / "model" / "model.json").read_text())
        assert model["threshold"] == record["value"]  # the model carries the same number


def test_perturbing_test_predictions_changes_no_threshold(experiment, tmp_path, monkeypatch):
    """Re-predict every test part with scrambled probabilities: the thresholds stay put."""
    out = tmp_path / "out"
    shutil.copytree(experiment["out"], out)
    before = [json.loads((out / f"fold-{k}" / "threshold.json").read_text())["value"]
              for k in range(3)]
    for k in range(3):  # the threshold belongs to the trained fold: only the test part goes
        (out / f"fold-{k}" / "test_predictions.csv").unlink()
    original = lungcad.prediction.predict_input

    def scrambled(model, inp, *args, **kwargs):
        result = original(model, inp, *args, **kwargs)
        probs = 1.0 - result.probabilities  # every test score reversed
        table = lungcad.prediction.prediction_table(model, inp, range(len(inp)), probs)
        return type(result)(table, result.failures, probs)

    monkeypatch.setattr(lungcad.prediction, "predict_input", scrambled)
    trainings: list = []
    calls: list = []
    install_spies(monkeypatch, calls, trainings)
    assert run_experiment_cli(experiment["config"], out) == 0
    after = [json.loads((out / f"fold-{k}" / "threshold.json").read_text())["value"]
             for k in range(3)]
    assert after == before
    assert trainings == []  # the trained models were reused
    assert calls == []  # and no threshold was chosen again
    original_oof = pd.read_csv(experiment["out"] / "oof_predictions.csv")
    new_oof = pd.read_csv(out / "oof_predictions.csv")
    assert np.allclose(new_oof["prob_malignant"], 1 - original_oof["prob_malignant"], atol=2e-6)


def test_validation_predictions_with_a_test_image_are_refused(experiment):
    from lungcad.data.splits import load_fold
    from lungcad.errors import LungcadError
    from lungcad.evaluation.thresholds import ValidationPredictions, decide_threshold

    view = load_fold(experiment["dataset"], experiment["split"], "jsrt-malignant", 0)
    probs = np.full((len(view.val), 2), 0.5)
    leaked = type(view)(view.manifest, view.task, 0, view.n_folds, view.train,
                        view.val[1:] + view.test[:1], view.test)
    with pytest.raises(LungcadError, match="TEST part"):
        ValidationPredictions.for_fold(leaked, probs)
    with pytest.raises(LungcadError, match="one row per validation image"):
        ValidationPredictions.for_fold(view, probs[1:])
    val = pd.read_csv(experiment["out"] / "fold-0" / "val_predictions.csv")
    with pytest.raises(TypeError, match="ValidationPredictions only"):
        decide_threshold(val, "youden")  # a bare table is not accepted
    choice = decide_threshold(ValidationPredictions.for_fold(view, probs), "youden")
    assert choice.value == 0.5 and choice.chosen_on == "validation"  # the one observed score


# ---------------------------------------------------------------------------------------------
# resuming and --folds

def test_folds_option_then_resume_trains_each_fold_once(tmp_path, monkeypatch):
    dataset, split = make_dataset(tmp_path / "synth")
    config = write_config(tmp_path / "tiny.yaml", dataset, split)
    out = tmp_path / "out"
    trainings: list = []
    install_spies(monkeypatch, [], trainings)

    assert run_experiment_cli(config, out, "--folds", 2) == 0
    assert trainings == [(0, True), (1, True)]
    assert not (out / "fold-2").exists()
    parts = split_parts(split)
    oof = pd.read_csv(out / "oof_predictions.csv")
    assert sorted(oof["path"]) == sorted(parts[0]["test"] + parts[1]["test"])
    assert json.loads((out / "summary.json").read_text())["folds_run"] == 2
    weights = out / "fold-0" / "model" / "weights.pt"
    stamp = weights.stat().st_mtime_ns

    assert run_experiment_cli(config, out) == 0  # all folds: only fold 2 is new
    assert trainings == [(0, True), (1, True), (2, True)]
    assert len(pd.read_csv(out / "oof_predictions.csv")) == 30

    assert run_experiment_cli(config, out) == 0  # everything done: nothing trains
    assert trainings == [(0, True), (1, True), (2, True)]
    assert weights.stat().st_mtime_ns == stamp
    meta = json.loads((out / "meta.json").read_text())
    assert [s["trained_folds"] for s in meta["sessions"]] == [[0, 1], [2], []]

    # a fold interrupted in training resumes from its last checkpoint
    fold = out / "fold-1"
    for name in ("test_predictions.csv", "threshold.json"):
        (fold / name).unlink()
    shutil.rmtree(fold / "model")
    run_meta = json.loads((fold / "meta.json").read_text())
    run_meta["status"] = "running"
    (fold / "meta.json").write_text(json.dumps(run_meta))
    assert run_experiment_cli(config, out) == 0
    assert trainings[3:] == [(1, True)]
    sessions = json.loads((fold / "meta.json").read_text())["sessions"]
    assert sessions[-1]["resumed_from"].endswith("last.ckpt")
    assert (fold / "test_predictions.csv").is_file()


def test_a_different_config_in_the_same_folder_is_refused(experiment, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(experiment["out"], out)
    status = main(["experiment", str(experiment["config"]), "--out", str(out),
                   "--set", "lr=0.5"])
    err = capsys.readouterr().err
    assert status == 2 and "different config (differs in: lr)" in err


def test_too_many_folds_is_one_line_error(experiment, tmp_path, capsys):
    status = main(["experiment", str(experiment["config"]), "--out", str(tmp_path / "x"),
                   "--folds", "4"])
    err = capsys.readouterr().err
    assert status == 2 and "has 3 fold(s)" in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------------
# a trainer other than Lightning

FAKE_TRAINER = '''
import numpy as np

from lungcad.training.registry import register_trainer

SEEN = []


@register_trainer("fake", description="a test trainer kept outside lungcad")
def fit(view, out_dir, config, *, resume=True, log=print):
    import torch

    from lungcad.model_dir import ModelSpec
    from lungcad.models import create_model
    from lungcad.preprocess import Preprocessing
    from lungcad.training.registry import TrainedFold

    SEEN.append({"train": list(view.train), "val": list(view.val), "fold": view.fold,
                 "custom": config["custom_key"]})
    torch.manual_seed(view.fold)
    network = create_model("ct-cnn", num_classes=2)
    spec = ModelSpec(name=f"fake-{view.fold}", architecture="ct-cnn", task=view.task.name,
                     classes=list(view.task.classes), preprocessing=Preprocessing(32, 1, 0.5, 0.25))
    return TrainedFold(network, spec, "# fake\\n")  # no validation probabilities: predicted for it
'''


def test_other_trainer_is_dispatched_and_its_threshold_chosen_on_validation(tmp_path,
                                                                            monkeypatch):
    (tmp_path / "fake_trainer_mod.py").write_text(FAKE_TRAINER)
    monkeypatch.syspath_prepend(str(tmp_path))
    dataset, split = make_dataset(tmp_path / "synth")
    config = tmp_path / "fake.yaml"
    config.write_text(f"trainer: 'fake_trainer_mod:fake'\ndataset: {dataset}\n"
                      f"split: {split}\ntask: jsrt-malignant\ncustom_key: 7\n")
    out = tmp_path / "out"
    assert main(["experiment", str(config), "--out", str(out), "--bootstrap", "0"]) == 0
    import fake_trainer_mod

    parts = split_parts(split)
    assert [s["fold"] for s in fake_trainer_mod.SEEN] == [0, 1, 2]
    for seen, part in zip(fake_trainer_mod.SEEN, parts):
        assert seen["custom"] == 7  # the trainer gets its own config keys
        assert sorted(seen["train"]) == sorted(part["train"])
        assert sorted(seen["val"]) == sorted(part["val"])
        assert not set(seen["train"] + seen["val"]) & set(part["test"])
    for k in range(3):
        record = json.loads((out / f"fold-{k}" / "threshold.json").read_text())
        val = pd.read_csv(out / f"fold-{k}" / "val_predictions.csv")  # predicted for the trainer
        assert sorted(val["path"]) == sorted(parts[k]["val"])
        from lungcad.evaluation.thresholds import choose_threshold

        expected = choose_threshold((val["true_label"] == "malignant").astype(int).to_numpy(),
                                    val["prob_malignant"].to_numpy(), "youden")
        assert record["value"] == expected and record["chosen_on"] == "validation"
        test = pd.read_csv(out / f"fold-{k}" / "test_predictions.csv")
        decided = np.where(test["prob_malignant"] >= record["value"], "malignant", "rest")
        assert (test["predicted_label"] == decided).all()
