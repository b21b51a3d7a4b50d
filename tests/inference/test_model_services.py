"""The loaded model and its services: LungModel does the forward pass and the decision; what is
done with a model (screen, segment, detect, explain) is a function that takes one; the Python
API's model (lungcad.load_model) offers them as methods; the input step and the shared weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import lungcad
from lungcad.domain.check import predict_image
from lungcad.errors import LungcadError
from lungcad.io import read_input
from lungcad.lung_model import LungModel, read_model_dir
from lungcad.model_dir import (BUNDLED_DIR, SPEC_FILE, WEIGHTS_FILE, ModelSpec, read_spec,
                               weights_path)

from test_inference import make_model_dir


def test_the_loaded_model_has_no_service_methods():
    for name in ("predict", "segment", "detect", "explain", "screen", "screen_one",
                 "predict_many", "domain_reference"):
        assert not hasattr(LungModel, name), name


def test_the_api_model_is_the_loaded_model_with_its_services(tmp_path):
    make_model_dir(tmp_path / "m")
    model = lungcad.load_model(tmp_path / "m")
    assert isinstance(model.core, LungModel) and model.spec.name == "t"
    image = np.random.default_rng(0).random((70, 90)).astype(np.float32)
    direct = predict_image(read_model_dir(tmp_path / "m"), image)
    assert model.predict(image).probabilities == direct.probabilities
    assert model.explain(image).shape == image.shape
    with pytest.raises(LungcadError, match="does not mark nodules"):
        model.detect(image)
    with pytest.raises(LungcadError, match="not a mask"):
        model.segment(image)


def test_one_default_threshold_and_one_verdict_wording(tmp_path):
    make_model_dir(tmp_path / "m", threshold=None)
    model = read_model_dir(tmp_path / "m")
    assert model.spec.decision_threshold == 0.5
    prediction = model.prediction(np.array([0.4, 0.6]))
    assert prediction.label == "abnormal" and prediction.threshold == 0.5
    assert prediction.line("x.png").startswith("x.png: abnormal (p=0.60, threshold 0.50)")
    assert prediction.verdict().startswith("abnormal (threshold 0.500): normal 0.400")


def test_the_input_step_reads_a_path_or_takes_an_array(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((20, 30), 255, np.uint8)).save(tmp_path / "a.png")
    from_path = read_input(tmp_path / "a.png", modality="ct", spacing_mm=(0.5, 0.5))
    assert from_path.array.shape == (20, 30) and from_path.source == str(tmp_path / "a.png")
    assert from_path.meta.modality == "ct" and from_path.meta.pixel_spacing_mm == (0.5, 0.5)
    given = read_input(np.zeros((4, 5)), spacing_mm=(1.0, 2.0))
    assert given.array.dtype == np.float32 and given.source == "image"
    assert given.meta.modality == "unknown" and given.meta.pixel_spacing_mm == (1.0, 2.0)


def test_a_model_reads_the_weights_of_the_bundled_model_it_names(tmp_path):
    """model.json ``weights_from``: one weights.pt serves two model directories."""
    (tmp_path / "m").mkdir()
    spec = json.loads((BUNDLED_DIR / "jsrt-malignant" / SPEC_FILE).read_text())
    (tmp_path / "m" / SPEC_FILE).write_text(json.dumps({**spec, "weights_from": "jsrt-malignant"}))
    assert not (tmp_path / "m" / WEIGHTS_FILE).exists()
    assert weights_path(tmp_path / "m", read_spec(tmp_path / "m")) == \
        BUNDLED_DIR / "jsrt-malignant" / WEIGHTS_FILE
    a, b = read_model_dir(tmp_path / "m"), read_model_dir(BUNDLED_DIR / "jsrt-malignant")
    assert read_spec(BUNDLED_DIR / "jsrt-malignant").weights_from is None
    for key, tensor in a.network.state_dict().items():
        assert torch.equal(tensor, b.network.state_dict()[key]), key


def test_weights_from_a_model_that_is_not_installed_is_a_clear_error(tmp_path):
    make_model_dir(tmp_path / "m")
    spec = json.loads((tmp_path / "m" / SPEC_FILE).read_text())
    (tmp_path / "m" / SPEC_FILE).write_text(json.dumps({**spec, "weights_from": "gone"}))
    with pytest.raises(LungcadError, match="'gone', which is not installed"):
        read_model_dir(tmp_path / "m")


def test_an_old_detector_directory_reads_under_the_one_network_name():
    spec = json.loads((BUNDLED_DIR / "jsrt-nodules" / SPEC_FILE).read_text())
    old = {**spec, "architecture": "nodule-heatmap-detector-lite0"}
    old.pop("detection")
    read = ModelSpec.from_dict(old)
    assert read.architecture == "nodule-heatmap-lite0" and read.detection == {}
