"""The domain check and calibration at prediction time: refusal by modality, the out-of-domain
flag, predictions.csv columns, and the same answers from PyTorch and ONNX Runtime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lungcad.domain.check import reference_of
from lungcad.errors import LungcadError


def _sample(name: str) -> Path:
    from pydicom.data import get_testdata_file

    found = get_testdata_file(name, download=False)
    if not found:
        pytest.skip(f"{name} is not installed (pydicom / pydicom-data)")
    return Path(found)


def _tiny_model_with_domain(directory: Path) -> Path:
    """A small ct-cnn model directory with a calibration and a domain reference."""
    import torch

    from lungcad.domain.descriptors import describe
    from lungcad.domain.reference import DOMAIN_FILE, fit_with_threshold
    from lungcad.model_dir import ModelSpec, save_model_dir
    from lungcad.models import create_model
    from lungcad.preprocess import Preprocessing

    torch.manual_seed(0)
    network = create_model("ct-cnn", num_classes=2)
    spec = ModelSpec(name="tiny", architecture="ct-cnn", task="ct-normal-vs-abnormal",
                     classes=["normal", "abnormal"], preprocessing=Preprocessing(size=64),
                     threshold=0.45, threshold_rule="test", modality="ct")
    save_model_dir(directory, network, spec)
    train = [_ct_like(seed) for seed in range(60)]
    reference, _ = fit_with_threshold(np.stack([describe(im, 64) for im in train]),
                                      np.arange(60) % 5, 64)
    reference.save(directory / DOMAIN_FILE)
    data = json.loads((directory / "model.json").read_text())
    data["calibration"] = {"method": "platt", "a": 0.6, "b": -0.2, "n": 60}
    data["domain"] = {"modality": "ct", "file": DOMAIN_FILE, "threshold": reference.threshold}
    (directory / "model.json").write_text(json.dumps(data))
    return directory


def _ct_like(seed: int) -> np.ndarray:
    """A dark field with a bright round body: what the CT classifier and reference expect."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:128, 0:128] / 128.0
    body = ((xx - 0.5) ** 2 + (yy - 0.52) ** 2 < 0.16 + rng.normal(0, 0.005)).astype(float)
    lungs = ((np.abs(xx - 0.5) - 0.17) ** 2 / 0.012 + (yy - 0.48) ** 2 / 0.05 < 1)
    image = 0.05 + 0.55 * body - 0.45 * lungs * body + rng.normal(0, 0.02, body.shape)
    return np.clip(image, 0, 1).astype(np.float32)


def test_ct_dicom_to_the_radiograph_model_is_refused_with_the_message():
    from lungcad import load_model

    model = load_model("jsrt-malignant")
    with pytest.raises(LungcadError, match=r"CT slice \(its DICOM Modality tag\).*"
                                           r"jsrt-malignant reads chest radiographs: refused"):
        model.predict(_sample("CT_small.dcm"))


def test_a_modern_radiograph_is_flagged_out_of_domain_but_answered():
    from lungcad import load_model

    prediction = load_model("jsrt-malignant").predict(_sample("RG1_UNCI.dcm"))
    assert prediction.in_domain is False
    assert prediction.domain_score > reference_of(load_model("jsrt-malignant")).threshold
    assert set(prediction.probabilities) == {"rest", "malignant"}
    assert "OUT OF DOMAIN: outside what this model was trained on" in prediction.verdict()


def test_onnx_gives_the_same_calibrated_probabilities_and_domain_answers(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from lungcad import load_model
    from lungcad.prediction import file_input, predict_input
    from lungcad.preprocess import resize_area
    from PIL import Image

    monkeypatch.setenv("LUNGCAD_CACHE_DIR", str(tmp_path / "cache"))
    directory = _tiny_model_with_domain(tmp_path / "tiny")
    folder = tmp_path / "images"
    folder.mkdir()
    images = [_ct_like(100 + i) for i in range(4)] + [1 - _ct_like(200)]
    for i, image in enumerate(images):
        Image.fromarray((image * 255).round().astype(np.uint8)).save(folder / f"{i}.png")
    torch_model, onnx_model = load_model(directory), load_model(directory, runtime="onnx")
    a = predict_input(torch_model, file_input([folder]))
    b = predict_input(onnx_model, file_input([folder]))
    assert list(a.table["in_domain"]) == list(b.table["in_domain"])
    assert np.allclose(a.table["domain_score"], b.table["domain_score"], atol=1e-4)
    assert np.abs(a.probabilities - b.probabilities).max() < 1e-4
    assert False in set(a.table["in_domain"])  # the inverted slice
    raw = torch_model.predict_batch(torch_model.prepare(images[0])[None])
    assert not np.allclose(raw, a.probabilities[0], atol=1e-3)  # calibration applied
    assert np.allclose(torch_model.calibrate(raw), a.probabilities[:1], atol=1e-5)


def test_predictions_csv_carries_in_domain_and_the_refusal(tmp_path):
    from lungcad.cli import main

    directory = _tiny_model_with_domain(tmp_path / "tiny")
    out = tmp_path / "p.csv"
    code = main(["predict", str(directory), str(_sample("RG1_UNCI.dcm")),
                 str(_sample("CT_small.dcm")), "--out", str(out)])
    import pandas as pd

    table = pd.read_csv(out)
    assert code == 1  # the radiograph was refused
    assert list(table["path"].map(lambda p: Path(p).name)) == ["CT_small.dcm"]
    assert {"in_domain", "domain_score"} <= set(table.columns)
