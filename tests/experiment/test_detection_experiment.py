"""A nodule-detector experiment end to end on a synthetic JSRT-like set: out-of-fold marks,
their FROC, image-level AUCs with and without age and sex, and the final model's age/sex model
and card."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from experiment_data import make_dataset, write_config
from lungcad.cli import main
from lungcad.errors import LungcadError


def _with_ages(root, split_path) -> None:
    """Add an age column (one blank) and keep the split file matching the new labels.csv."""
    table = pd.read_csv(root / "labels.csv")
    table["age"] = [40 + 2 * i if i != 4 else np.nan for i in range(len(table))]
    table.to_csv(root / "labels.csv", index=False)
    split = json.loads(split_path.read_text())
    split["manifest_sha256"] = hashlib.sha256((root / "labels.csv").read_bytes()).hexdigest()
    split_path.write_text(json.dumps(split))


@pytest.fixture(scope="module")
def detection_run(tmp_path_factory):
    import lungcad.detection.detect as detect_module

    root = tmp_path_factory.mktemp("det")
    data, split = make_dataset(root / "jsrt", n=18, size=64, n_folds=2)
    _with_ages(data, split)
    config = write_config(root / "cfg" / "det.yaml", data, split, trainer="nodule_heatmap",
                          model="nodule-heatmap-lite0", detector=True, image_size=64, epochs=3,
                          batch_size=4,
                          crop_cells=4, model_args={"pretrained": False, "head_channels": 8},
                          torch_threads=1, marks={"peaks": 3, "min_distance_mm": 10})
    out = root / "run"
    with pytest.MonkeyPatch.context() as patch:  # synthetic pictures have no lungs to find
        patch.setattr(detect_module, "bundled_lung_model", lambda: None)
        patch.setenv("LUNGCAD_CACHE_DIR", str(root / "cache"))  # frozen features: not in ~
        assert main(["experiment", str(config), "--out", str(out), "--bootstrap", "50"]) == 0
        assert main(["experiment", str(config), "--out", str(out), "--final",
                     "--name", "test-nodules"]) == 0
        yield data, out


def test_each_fold_marks_its_test_images_and_the_pool_is_scored(detection_run):
    data, out = detection_run
    oof = pd.read_csv(out / "oof_findings.csv")
    labels = pd.read_csv(data / "labels.csv")
    assert set(oof["path"]) <= set(labels["path"]) and len(oof) > 0
    assert oof.groupby("path").size().max() <= 3  # peaks: 3
    assert oof["x"].between(0, 63).all() and oof["y"].between(0, 63).all()
    for k in (0, 1):  # a fold's marks are on its own test images only
        test = set(pd.read_csv(out / f"fold-{k}" / "test_predictions.csv")["path"])
        assert set(pd.read_csv(out / f"fold-{k}" / "test_findings.csv")["path"]) <= test
    froc = json.loads((out / "froc" / "froc.json").read_text())
    assert froc["n_images"] == 18 and froc["n_nodules"] == 12
    assert 0 <= froc["cpm"]["value"] <= 1 and (out / "froc" / "report.html").is_file()


def test_the_summary_has_froc_and_image_aucs_with_and_without_age_and_sex(detection_run):
    _, out = detection_run
    summary = json.loads((out / "summary.json").read_text())
    image = summary["froc"]["image_level"]
    assert set(image["malignant_vs_rest"]) == {
        "image only", "image + age + sex (cross-fitted by fold)", "age + sex only (reference)"}
    for rows in image.values():
        assert all(0 <= v["value"] <= 1 for v in rows.values())
    text = (out / "summary.md").read_text()
    assert "Nodule marks (FROC" in text and "age + sex only (reference)" in text
    oof = pd.read_csv(out / "oof_predictions.csv")
    assert {"n_marks", "top_mark_score", "malignancy"} <= set(oof.columns)


def test_the_final_detector_carries_its_age_sex_model_and_froc_card(detection_run):
    from lungcad import load_model
    from lungcad.io import load_image
    import lungcad.detection.detect as detect_module

    data, out = detection_run
    spec = json.loads((out / "final" / "model" / "model.json").read_text())
    clinical = spec["detection"]["clinical"]
    assert clinical["n_fitted"] == 18 and clinical["mean_age"] == pytest.approx(
        pd.read_csv(data / "labels.csv")["age"].mean())
    assert spec["detection"]["marks"]["peaks"] == 3
    card = (out / "final" / "model" / "MODEL_CARD.md").read_text()
    assert "Nodule marks (FROC, out of fold)" in card and "malignancy_age_sex" in card
    model = load_model(out / "final" / "model")
    image = load_image(data / "images" / "case000.png").array
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(detect_module, "bundled_lung_model", lambda: None)
        young = model.detect(image, age=30, sex="F")
        old = model.detect(image, age="090Y", sex="F")
        missing = model.detect(image)
        assert 0 < young.malignancy_age_sex < 1 and young.age_sex_note == ""
        assert (old.malignancy_age_sex > young.malignancy_age_sex) == (clinical["coef_age"] > 0)
        assert "age" in missing.age_sex_note and "sex" in missing.age_sex_note
        with pytest.raises(LungcadError, match="is not an age"):
            model.detect(image, age="old")
        with pytest.raises(LungcadError, match="is not a sex"):
            model.detect(image, sex="yes")


def test_a_run_of_one_fold_reports_the_image_aucs_it_can():
    """``--folds 1``: no other fold to fit the age/sex model on, so the cross-fitted rows are
    left out (they used to end the run with an error after the FROC was written)."""
    from lungcad.experiment.detection import image_level_summary

    rng = np.random.default_rng(0)
    n = 12
    labels = ["malignant", "benign", "non_nodule"] * (n // 3)
    oof = pd.DataFrame({"dataset_label": labels, "prob_nodule": rng.random(n),
                        "top_mark_score": rng.random(n), "malignancy": rng.random(n),
                        "age": rng.integers(30, 80, n), "sex": ["M", "F"] * (n // 2),
                        "fold": 0})
    one = image_level_summary(oof, n_bootstrap=20, seed=0)
    assert set(one["malignant_vs_rest"]) == {"image only"}
    assert 0 <= one["nodule_vs_none"]["image score (strongest cell)"]["value"] <= 1
    two = image_level_summary(oof.assign(fold=[0, 1] * (n // 2)), n_bootstrap=20, seed=0)
    assert "image + age + sex (cross-fitted by fold)" in two["malignant_vs_rest"]
