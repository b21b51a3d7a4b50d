"""``auto``: a mixed folder routed to the bundled models of each image's modality (CLI, Python
API, and the web server's /api/v1/modality that the page's default choice uses)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest


def _sample(name: str) -> Path:
    from pydicom.data import get_testdata_file

    found = get_testdata_file(name, download=False)
    if not found:
        pytest.skip(f"{name} is not installed (pydicom / pydicom-data)")
    return Path(found)


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory, shared_data) -> Path:
    """Radiographs and CT slices as PNG/JPEG (no tag: the image decides) and DICOMs of both."""
    folder = tmp_path_factory.mktemp("mixed")
    shutil.copy(shared_data / "jsrt/images/JPCLN001.png", folder / "a_radiograph.png")
    shutil.copy(shared_data / "iqothnccd/images/normal/normal_001.jpg", folder / "b_ct.jpg")
    kaggle = pd.read_csv(shared_data / "chest_ct_kaggle/labels.csv")["path"][0]
    shutil.copy(shared_data / "chest_ct_kaggle" / kaggle, folder / "c_ct.png")
    shutil.copy(_sample("CT_small.dcm"), folder / "d_ct.dcm")
    shutil.copy(_sample("RG1_UNCI.dcm"), folder / "e_radiograph.dcm")
    return folder


def test_the_image_classifier_tells_radiographs_from_ct(mixed_folder):
    from lungcad.domain.modality import classifier_info, guess_modality
    from lungcad.io import load_image

    info = classifier_info()
    assert info["classes"] == ["radiograph", "ct", "neither"]
    assert info["cross_validated"]["jsrt_original"]["correct"] >= 0.995
    assert info["cross_validated"]["jsrt_variants"]["refused"] == 0
    for path in mixed_folder.iterdir():
        loaded = load_image(path)
        expected = "ct" if "_ct" in path.name else "radiograph"
        if path.suffix != ".dcm":  # the image alone (CT_small.dcm, a 128 px crop of the
            # mediastinum, looks like no training slice: its tag decides)
            assert guess_modality(loaded.array).modality == expected, path.name
        guess = guess_modality(loaded.array, loaded.meta.modality)
        assert guess.modality == expected
        assert guess.source == ("DICOM Modality tag" if path.suffix == ".dcm"
                                else "image classifier")


def test_predict_auto_routes_a_mixed_folder(mixed_folder, tmp_path):
    from lungcad.cli import main
    from lungcad.domain.auto import bundled_by_modality

    by_modality = bundled_by_modality()
    assert by_modality["radiograph"] and by_modality["ct"]
    out = tmp_path / "auto.csv"
    assert main(["predict", "auto", str(mixed_folder), "--out", str(out)]) == 0
    table = pd.read_csv(out)
    table["name"] = table["path"].map(lambda p: Path(p).name)
    for name, rows in table.groupby("name"):
        modality = "ct" if "_ct" in name else "radiograph"
        assert set(rows["modality"]) == {modality}
        assert sorted(m.split("@")[0] for m in rows["model"]) == sorted(by_modality[modality])
    assert len(table) == 2 * len(by_modality["radiograph"]) + 3 * len(by_modality["ct"])
    assert {"in_domain", "domain_score"} <= set(table.columns)
    dicom_rows = table[table["name"].str.endswith(".dcm")]
    assert set(dicom_rows["modality_source"]) == {"DICOM Modality tag"}
    # the detector's marks go to findings.csv beside the predictions, counted in whole numbers
    detector = table[table["model"].str.startswith("jsrt-nodules@")]
    assert len(detector) == 2
    findings = pd.read_csv(tmp_path / "auto_findings.csv")
    assert set(findings["path"]) <= set(detector["path"]) and len(findings) >= 1
    assert findings.groupby("path").size().to_dict() == {
        p: n for p, n in zip(detector["path"], detector["n_marks"]) if n}
    raw = pd.read_csv(out, dtype=str)
    assert all(v.isdigit() for v in raw["n_marks"].dropna()), raw["n_marks"].tolist()
    # images from the bundled models' own training sets say so; the DICOM samples were not
    trained = table.set_index(["name", "model"])["in_training_data"]
    assert trained[("a_radiograph.png", detector["model"].iloc[0])] == True  # noqa: E712
    assert not table[table["name"].str.endswith(".dcm")]["in_training_data"].astype(bool).any()


def test_load_model_auto_predicts_by_modality():
    import lungcad
    from lungcad.domain.auto import bundled_by_modality

    auto = lungcad.load_model("auto")
    result = auto.predict(_sample("CT_small.dcm"))
    assert result.modality.modality == "ct"
    assert sorted(result.predictions) == sorted(bundled_by_modality()["ct"])
    assert "CT slice" in result.verdict()


@pytest.fixture
def binary_model_dir(tmp_path) -> Path:
    import torch

    from lungcad.model_dir import ModelSpec, save_model_dir
    from lungcad.models import create_model
    from lungcad.preprocess import Preprocessing

    torch.manual_seed(0)
    spec = ModelSpec(name="test-ct-binary", architecture="ct-cnn", task="ct-normal-vs-abnormal",
                     classes=["normal", "abnormal"], preprocessing=Preprocessing(size=64),
                     threshold=0.4, modality="ct")
    return save_model_dir(tmp_path / "m", create_model("ct-cnn", num_classes=2), spec)


def test_the_page_default_asks_the_server_which_models_read_the_image(binary_model_dir):
    """The server answers /api/v1/modality with the served models of the image's modality:
    what the page's default (automatic) choice then runs; the page offers that choice."""
    from fastapi.testclient import TestClient

    from lungcad.serving.app import STATIC_DIR, create_app

    app = create_app([binary_model_dir])  # a CT model
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        ct = client.post("/api/v1/modality", files={"file": ("x.dcm",
                                                            _sample("CT_small.dcm").read_bytes())})
        rg = client.post("/api/v1/modality", files={"file": ("y.dcm",
                                                            _sample("RG1_UNCI.dcm").read_bytes())})
    assert ct.status_code == 200 and ct.json()["modality"] == "ct"
    assert ct.json()["models"] == ["test-ct-binary"]
    assert rg.json() == {"modality": "radiograph", "source": "DICOM Modality tag",
                         "confidence": 1.0, "models": []}
    script = (STATIC_DIR / "app.js").read_text()
    assert 'select.value = "auto"' in script and "/modality" in script
