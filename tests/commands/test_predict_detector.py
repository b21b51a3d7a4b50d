"""lungcad predict with a detector: findings.csv beside the predictions, image-level columns,
--age/--sex (present, missing, nonsense), and the one-image verdict listing the marks."""

from __future__ import annotations

import pandas as pd
import pytest

from detector_testing import CLINICAL, chest_png, no_lung_model, save_detector_dir
from lungcad.cli import main


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict-detector")
    model = save_detector_dir(root / "model", clinical=CLINICAL)
    images = [chest_png(root / "a.png", 128, 128), chest_png(root / "b.png", 256, 192, seed=1)]
    with no_lung_model():
        yield root, model, images


def test_findings_go_beside_the_predictions_in_each_images_pixels(setup):
    root, model, images = setup
    out = root / "run1" / "predictions.csv"
    assert main(["predict", str(model), *map(str, images), "--out", str(out)]) == 0
    predictions = pd.read_csv(out)
    findings = pd.read_csv(root / "run1" / "findings.csv")
    assert {"n_marks", "top_mark_score", "malignancy", "malignancy_age_sex",
            "age_sex_note"} <= set(predictions.columns)
    assert set(findings["path"]) == set(map(str, images))
    sizes = {str(images[0]): (128, 128), str(images[1]): (192, 256)}  # (width, height)
    for row in findings.itertuples():
        width, height = sizes[row.path]
        assert 0 <= row.x < width and 0 <= row.y < height and 0 <= row.score <= 1
    counts = findings.groupby("path").size()
    assert predictions.set_index("path")["n_marks"].to_dict() == counts.to_dict()
    assert predictions["age_sex_note"].str.contains("missing age").all()  # PNGs carry no age


def test_age_and_sex_options_are_used_and_named_findings_file(setup):
    root, model, images = setup
    out = root / "run2" / "p.csv"
    assert main(["predict", str(model), str(images[0]), "--out", str(out),
                 "--age", "75", "--sex", "M"]) == 0
    older = pd.read_csv(out).iloc[0]
    assert (root / "run2" / "p_findings.csv").is_file()
    assert pd.isna(older["age_sex_note"]) or older["age_sex_note"] == ""
    assert main(["predict", str(model), str(images[0]), "--out", str(out), "--age", "35",
                 "--sex", "M"]) == 0
    younger = pd.read_csv(out).iloc[0]
    assert older["malignancy"] == younger["malignancy"]
    assert older["malignancy_age_sex"] > younger["malignancy_age_sex"]


@pytest.mark.parametrize("option, value, message", [("--age", "old", "is not an age"),
                                                    ("--age", "200", "out of range"),
                                                    ("--sex", "X", "is not a sex")])
def test_nonsense_age_or_sex_is_refused_before_any_image(setup, capsys, option, value, message):
    root, model, images = setup
    out = root / "bad" / "p.csv"
    assert main(["predict", str(model), str(images[0]), "--out", str(out), option, value]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_one_image_prints_the_verdict_and_its_marks(setup, capsys):
    _, model, images = setup
    assert main(["predict", str(model), str(images[0])]) == 0
    out = capsys.readouterr().out
    assert "malignancy (image only)" in out and "with age and sex" in out
    assert "mark 1: x " in out
