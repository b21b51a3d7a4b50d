"""`lungcad train` end to end on a tiny synthetic dataset: the run folder, the model directory,
and the preprocessing shared by training and prediction."""

from __future__ import annotations

import importlib.metadata
import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from training_data import make_dataset, tiny_config
from PIL import Image

from lungcad.cli import main
from lungcad.data.manifest import Manifest
from lungcad.errors import LungcadError
from lungcad.evaluation.thresholds import choose_threshold
from lungcad import load_model
from lungcad.models import create_model, logits_to_probs
from lungcad.training.checkpoint_io import load_checkpoint_file
from lungcad.training.data import ImageDataset
from lungcad.training.fit import train
from lungcad.training.lightning_trainer import network_state

EXPECTED_FILES = ["config.yaml", "meta.json", "metrics.csv", "curves.png", "checkpoints/best.ckpt",
                  "checkpoints/last.ckpt", "val_predictions.csv", "model/model.json",
                  "model/weights.pt", "model/MODEL_CARD.md"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run through the CLI, shared by the tests below."""
    root = tmp_path_factory.mktemp("train")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LUNGCAD_CACHE_DIR", str(root / "cache"))
        dataset, split = make_dataset(root / "synth", n=24, size=48)
        cfg = root / "cfg" / "tiny.yaml"
        cfg.parent.mkdir()
        # relative paths: resolved against the config's folder
        cfg.write_text("model: paper-cnn-lstm\ndataset: ../synth\ntask: jsrt-malignant\n"
                       "split: ../synth-split.json\nimage_size: 32\nbatch_size: 8\nlr: 1e-3\n"
                       "epochs: 5\nmonitor: val_auroc\nthreshold: youden\nprogress_bar: false\n")
        run = root / "run"
        status = main(["train", str(cfg), "--out", str(run), "--epochs", "3", "--set", "seed=7"])
        yield {"status": status, "run": run, "dataset": dataset, "split": split, "cfg": cfg, "root": root}


def test_run_folder_has_every_file(trained):
    assert trained["status"] == 0
    run = trained["run"]
    missing = [f for f in EXPECTED_FILES if not (run / f).is_file()]
    assert not missing
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_metrics_csv_has_one_row_per_epoch(trained):
    table = pd.read_csv(trained["run"] / "metrics.csv")
    assert table["epoch"].tolist() == [0, 1, 2]  # --epochs 3 overrides the config's 5
    for column in ("train_loss", "train_acc", "val_loss", "val_acc", "val_auroc", "epoch_time_s"):
        assert table[column].notna().all(), column
    assert ((table["val_acc"] >= 0) & (table["val_acc"] <= 1)).all()


def test_config_and_meta_record_the_run(trained):
    run = trained["run"]
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["epochs"] == 3 and config["seed"] == 7
    assert config["dataset"] == str(trained["dataset"].resolve())
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "finished"
    assert meta["dataset"]["manifest_sha256"] == Manifest.load(trained["dataset"]).sha256()
    import hashlib

    assert meta["split"]["sha256"] == hashlib.sha256(trained["split"].read_bytes()).hexdigest()
    assert meta["split"]["fold"] == 0 and meta["seed"] == 7
    assert len(meta["wall_time_per_epoch_s"]) == 3
    assert meta["versions"]["torch"] == importlib.metadata.version("torch")
    assert meta["device"]["accelerator"] == "cpu" and meta["device"]["precision"] == "32-true"


def test_checkpoints_load_weights_only(trained):
    for path in (trained["run"] / "checkpoints").glob("*.ckpt"):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        assert "state_dict" in checkpoint
    last = load_checkpoint_file(trained["run"] / "checkpoints" / "last.ckpt")
    assert last["epoch"] == 2


def best_network(run):
    network = create_model("paper-cnn-lstm", 2)
    network.load_state_dict(network_state(load_checkpoint_file(run / "checkpoints" / "best.ckpt")))
    return network.eval()


def test_val_predictions_are_the_best_checkpoint_on_the_val_part(trained):
    run = trained["run"]
    table = pd.read_csv(run / "val_predictions.csv")
    assert list(table.columns) == ["path", "true_label", "prob_rest", "prob_malignant"]
    split = json.loads(trained["split"].read_text())
    assert table["path"].tolist() == split["folds"][0]["val"]
    assert np.allclose(table[["prob_rest", "prob_malignant"]].sum(axis=1), 1, atol=1e-5)
    model = load_model(run)
    manifest = Manifest.load(trained["dataset"])
    for path, p in zip(table["path"], table["prob_malignant"]):
        assert model.predict(manifest.image_path(path)).probabilities["malignant"] == pytest.approx(p, abs=2e-6)
    # the threshold is the config's rule applied to these predictions
    y = (table["true_label"] == "malignant").astype(int).to_numpy()
    assert model.spec.threshold == pytest.approx(choose_threshold(y, table["prob_malignant"].to_numpy(), "youden"),
                                                 abs=1e-6)
    assert model.spec.threshold_rule.startswith("youden")
    assert model.spec.architecture_args.get("pretrained", False) is False


def test_prediction_applies_exactly_the_training_preprocessing(trained):
    """load_model(...).predict(path) == the network on the training pipeline's tensor."""
    run = trained["run"]
    model = load_model(run / "model")
    manifest = Manifest.load(trained["dataset"])
    assert model.spec.preprocessing.size == 32
    network = best_network(run)
    paths = manifest.paths[:4]
    dataset = ImageDataset(manifest, paths, [0] * len(paths), model.spec.preprocessing)  # no augmentation
    for i, path in enumerate(paths):
        x, _ = dataset[i]
        with torch.no_grad():
            want = logits_to_probs(network(x[None]))[0].numpy()
        got = model.predict(manifest.image_path(path))
        assert np.allclose([got.probabilities["rest"], got.probabilities["malignant"]], want, atol=1e-6)


def test_implausible_input_is_a_clear_error(trained, tmp_path):
    model = load_model(trained["run"])
    raw = np.random.default_rng(0).uniform(0, 255, (64, 64)).astype(np.float32)
    with pytest.raises(LungcadError, match="raw pixel values"):
        model.predict(raw)
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(tiny)
    with pytest.raises(LungcadError, match="too small"):
        model.predict(tiny)


def test_resuming_with_another_config_is_refused(trained, capsys):
    status = main(["train", str(trained["cfg"]), "--out", str(trained["run"]), "--epochs", "3",
                   "--set", "seed=7", "--set", "lr=0.5"])
    assert status == 2
    assert "different config" in capsys.readouterr().err


def test_three_class_task_with_sampler_and_split_mismatch(tmp_path, monkeypatch):
    monkeypatch.setenv("LUNGCAD_CACHE_DIR", str(tmp_path / "cache"))
    dataset, split = make_dataset(tmp_path / "synth3", n=18, size=32)
    config = tiny_config(dataset, split, model="ct-cnn", task="jsrt-3class", epochs=1,
                         class_balance="sampler", monitor="val_loss")
    model_dir = train(config, tmp_path / "run3")
    model = load_model(model_dir)
    assert model.classes == ["non_nodule", "benign", "malignant"] and model.spec.threshold is None
    table = pd.read_csv(tmp_path / "run3" / "val_predictions.csv")
    assert [c for c in table.columns if c.startswith("prob_")] == [
        "prob_non_nodule", "prob_benign", "prob_malignant"]
    # a split made for another labels.csv is refused
    (dataset / "labels.csv").write_text((dataset / "labels.csv").read_text().replace("benign", "malignant", 1))
    with pytest.raises(LungcadError, match="made for a labels.csv with sha256"):
        train(config, tmp_path / "run4")


def test_fold_argument_overrides_config_and_unknown_fold_is_an_error(synthetic, tmp_path):
    dataset, split = synthetic
    config = tiny_config(dataset, split, epochs=1, fold=0)
    with pytest.raises(LungcadError, match="fold 5 does not exist"):
        train(config, tmp_path / "r", fold=5)
    train(config, tmp_path / "r1", fold=1)
    meta = json.loads((tmp_path / "r1" / "meta.json").read_text())
    assert meta["split"]["fold"] == 1


def test_same_seed_deterministic_runs_give_the_same_metrics(synthetic, tmp_path):
    dataset, split = synthetic
    config = tiny_config(dataset, split, epochs=2, deterministic=True, seed=3)
    tables = []
    for name in ("a", "b"):
        train(config, tmp_path / name)
        tables.append(pd.read_csv(tmp_path / name / "metrics.csv").drop(columns="epoch_time_s"))
    pd.testing.assert_frame_equal(tables[0], tables[1])
    other = tiny_config(dataset, split, epochs=2, deterministic=True, seed=4)
    train(other, tmp_path / "c")
    third = pd.read_csv(tmp_path / "c" / "metrics.csv").drop(columns="epoch_time_s")
    assert not np.allclose(third["train_loss"], tables[0]["train_loss"])
