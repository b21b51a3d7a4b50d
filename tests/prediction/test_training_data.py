"""A model directory knows what it was trained on (issue 23): predict, the verdict and evaluate
say when an image was in the model's training data, and evaluate will not call it a validation."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lungcad.cli import main
from lungcad.domain.training_data import (TRAINING_FILE, IN_TRAINING_TEXT, load_digests,
                                          pixel_digest, record_images)
from lungcad.model_dir import BUNDLED_DIR, bundled_models
from pictures import synthetic_image


def _png(path, seed: int):
    Image.fromarray(np.round(synthetic_image(512, 512, seed) * 255).astype(np.uint8)).save(path)
    return path


def test_digest_is_of_the_pixels_not_the_file(tmp_path):
    from lungcad.io import load_image

    png = _png(tmp_path / "a.png", 0)
    Image.open(png).save(tmp_path / "a.tif")  # the same pixels in another container
    digests = {pixel_digest(load_image(p).array) for p in (png, tmp_path / "a.tif")}
    assert len(digests) == 1 and len(next(iter(digests))) == 32
    changed = load_image(png).array.copy()
    changed[10, 10] = 1.0 - changed[10, 10]
    assert pixel_digest(changed) not in digests
    assert pixel_digest(changed.T.copy()) != pixel_digest(changed)  # the shape counts too


def test_every_bundled_model_records_its_training_images():
    for name in bundled_models():
        spec = json.loads((BUNDLED_DIR / name / "model.json").read_text())
        digests = load_digests(str((BUNDLED_DIR / name).resolve()))
        assert digests is not None, name
        # one digest per distinct image: at most n_train, and a compact file (32 bytes each)
        assert 0.8 * spec["metrics"]["n_train"] <= len(digests) <= spec["metrics"]["n_train"]
        assert (BUNDLED_DIR / name / TRAINING_FILE).stat().st_size == 32 * len(digests)


@pytest.fixture
def model_with_record(tmp_path):
    """A copy of the bundled jsrt-malignant (weights untouched) that records one synthetic
    image as its training data."""
    directory = tmp_path / "model"
    shutil.copytree(BUNDLED_DIR / "jsrt-malignant", directory)
    trained = _png(tmp_path / "trained.png", 1)
    record_images(directory, [trained])
    return directory, trained, _png(tmp_path / "held_out.png", 2)


def test_predict_and_evaluate_say_which_images_were_training_images(model_with_record, tmp_path,
                                                                     capsys):
    directory, trained, held_out = model_with_record
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(directory), str(trained), str(held_out), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "1 of 2 images were in the model's training data" in err
    table = pd.read_csv(out)
    assert dict(zip(table["path"], table["in_training_data"])) == {str(trained): True,
                                                                   str(held_out): False}
    # the verdict on one image says so; the held-out image's does not
    assert main(["predict", str(directory), str(trained)]) == 0
    assert IN_TRAINING_TEXT in capsys.readouterr().out
    assert main(["predict", str(directory), str(held_out)]) == 0
    assert IN_TRAINING_TEXT not in capsys.readouterr().out

    table["true_label"] = ["malignant", "rest"]
    table.to_csv(out, index=False)
    assert main(["evaluate", str(out), "--bootstrap", "0", "--out", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert "NOT A VALIDATION: 1 of 2 images were in the model's training data" in err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["in_training_data"] == {"n_images": 2, "n_in_training_data": 1,
                                          "validation": False}
    assert "NOT A VALIDATION" in (tmp_path / "r" / "report.md").read_text()

    held = table[table["path"] == str(held_out)].assign(true_label="rest")
    held = pd.concat([held, held.assign(path="copy.png", true_label="malignant")])
    held.to_csv(out, index=False)
    assert main(["evaluate", str(out), "--bootstrap", "0", "--out", str(tmp_path / "r2")]) == 0
    assert "NOT A VALIDATION" not in capsys.readouterr().err
    report = json.loads((tmp_path / "r2" / "report.json").read_text())
    assert report["in_training_data"]["validation"] is True


def test_library_prediction_carries_the_flag(model_with_record):
    import lungcad

    directory, trained, held_out = model_with_record
    model = lungcad.load_model(str(directory))
    seen, unseen = model.predict(trained), model.predict(held_out)
    assert seen.in_training_data is True and IN_TRAINING_TEXT in seen.domain_note
    assert unseen.in_training_data is False and IN_TRAINING_TEXT not in unseen.domain_note


@pytest.mark.data
def test_a_bundled_models_own_training_image_is_recognised(shared_data, tmp_path, capsys):
    """jsrt-malignant was trained (--final) on every image of ../shared/data/jsrt."""
    training_image = shared_data / "jsrt" / "images" / "JPCLN004.png"
    held_out = _png(tmp_path / "held_out.png", 3)
    out = tmp_path / "p.csv"
    assert main(["predict", "jsrt-malignant", str(training_image), str(held_out),
                 "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert table["in_training_data"].tolist() == [True, False]
    assert "1 of 2 images were in the model's training data" in capsys.readouterr().err
