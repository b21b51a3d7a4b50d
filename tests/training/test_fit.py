"""`lungcad train` runs every registered trainer through one code path
(:func:`lungcad.training.fit.train` -> trainer -> :func:`lungcad.training.fit.finish`), which
decides the threshold on the validation part and writes the model directory."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import lungcad.training.fit
from lungcad.cli import main
from lungcad.evaluation.thresholds import choose_threshold


def _write(path: Path, keys: dict) -> Path:
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in keys.items()))
    return path


def test_lightning_and_linear_probe_configs_train_through_the_same_path(synthetic, tmp_path,
                                                                         monkeypatch):
    dataset, split = synthetic
    common = {"dataset": str(dataset), "split": str(split), "task": "jsrt-malignant",
              "threshold": "youden"}
    lightning = _write(tmp_path / "lightning.yaml",
                       {**common, "model": "paper-cnn-lstm", "image_size": 32, "epochs": 1,
                        "batch_size": 8, "progress_bar": False})
    probe = _write(tmp_path / "probe.yaml", {**common, "trainer": "linear_probe",
                                             "image_size": 64, "Cs": [0.1, 1.0],
                                             "inner_folds": 2})
    finished: list = []
    original = lungcad.training.fit.finish

    def spy(trained, view, out_dir, rule):
        finished.append((Path(out_dir).name, trained.spec.architecture, view.fold, rule))
        return original(trained, view, out_dir, rule)

    monkeypatch.setattr(lungcad.training.fit, "finish", spy)
    for config, run in ((lightning, "lightning-run"), (probe, "probe-run")):
        assert main(["train", str(config), "--out", str(tmp_path / run)]) == 0
    assert finished == [("lightning-run", "paper-cnn-lstm", 0, "youden"),
                        ("probe-run", "efficientnet-lite0", 0, "youden")]
    val_part = json.loads(split.read_text())["folds"][0]["val"]
    for run in ("lightning-run", "probe-run"):
        folder = tmp_path / run
        spec = json.loads((folder / "model" / "model.json").read_text())
        record = json.loads((folder / "threshold.json").read_text())
        val = pd.read_csv(folder / "val_predictions.csv")
        assert sorted(val["path"]) == sorted(val_part)
        # the one decision, on the unrounded validation probabilities the trainer handed back
        expected = choose_threshold((val["true_label"] == "malignant").to_numpy(int),
                                    val["prob_malignant"].to_numpy(), "youden")
        assert spec["threshold"] == record["value"] == expected
        assert record["chosen_on"] == "validation"
        assert spec["threshold_rule"].startswith("youden on ")


def test_a_trainer_handing_back_misshapen_probabilities_is_refused(synthetic, tmp_path):
    from lungcad.data.splits import load_fold
    from lungcad.errors import LungcadError
    from lungcad.model_dir import ModelSpec
    from lungcad.models import create_model
    from lungcad.preprocess import Preprocessing
    from lungcad.training.fit import finish
    from lungcad.training.registry import TrainedFold

    dataset, split = synthetic
    view = load_fold(dataset, split, "jsrt-malignant", 0)
    spec = ModelSpec(name="x", architecture="ct-cnn", task="jsrt-malignant",
                     classes=["rest", "malignant"], preprocessing=Preprocessing(32, 1, 0.5, 0.25))
    bad = TrainedFold(create_model("ct-cnn", 2), spec, None, [[0.5, 0.5]])
    with pytest.raises(LungcadError, match="one row per validation image"):
        finish(bad, view, tmp_path / "run", "youden")
    assert not (tmp_path / "run" / "model").exists()


def test_training_gives_back_threads_and_random_state(synthetic, tmp_path):
    """A trainer sets torch's thread count and seeds the global generators (Lightning's
    seed_everything: torch, NumPy, random) for its own run; what runs next in the process
    (another fold, a caller, another test) gets them back unchanged."""
    import random

    import numpy as np
    import torch

    dataset, split = synthetic
    config = _write(tmp_path / "tiny.yaml",
                    {"dataset": str(dataset), "split": str(split), "task": "jsrt-malignant",
                     "model": "paper-cnn-lstm", "image_size": 32, "epochs": 1, "batch_size": 8,
                     "progress_bar": False, "torch_threads": 1, "seed": 7})
    before_threads = torch.get_num_threads()
    torch.set_num_threads(2)  # not the config's 1, which the trainer sets for its run
    try:
        torch.manual_seed(12345)
        np.random.seed(12345)
        random.seed(12345)
        expected = (torch.rand(4), np.random.rand(4), random.random())
        torch.manual_seed(12345)
        np.random.seed(12345)
        random.seed(12345)
        assert main(["train", str(config), "--out", str(tmp_path / "run")]) == 0
        assert torch.get_num_threads() == 2
        assert torch.equal(torch.rand(4), expected[0])
        assert np.array_equal(np.random.rand(4), expected[1])
        assert random.random() == expected[2]
    finally:
        torch.set_num_threads(before_threads)
