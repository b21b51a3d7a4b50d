"""Lung segmentation in the REST API: a segmentation model's own answer (mask, outline, measures,
warnings), and the lung-outline layer a classifier's answer gets with ``lungs=true``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from serving_data import PREDICT, dark_pixel_segmenter, decoded_png, encode, post_image, two_lungs



@pytest.fixture(scope="module")
def chest_png() -> bytes:
    return encode(two_lungs(200, 160), "PNG")


def expected_segmentation(data: bytes):
    from lungcad.io import load_image

    return dark_pixel_segmenter().segment(load_image(data, name="chest.png").array)


def test_models_say_which_is_a_segmenter_and_which_draws_lungs(lungs_client, client):
    body = lungs_client.get("/api/v1/models").json()
    kinds = {m["id"]: m["kind"] for m in body["models"]}
    assert kinds == {"test-cxr": "classifier", "jsrt-lungs": "segmenter"}
    assert body["lungs_model"] == "jsrt-lungs" and body["default"] == "auto"
    segmenter = [m for m in body["models"] if m["id"] == "jsrt-lungs"][0]
    assert segmenter["heatmaps"] is False and segmenter["modality"] == "chest radiograph"
    assert client.get("/api/v1/models").json()["lungs_model"] is None  # no segmenter served


def test_segmenter_answers_with_mask_outline_and_measures(lungs_client, chest_png):
    response = post_image(lungs_client, chest_png, model="jsrt-lungs")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["kind"] == "segmentation" and body["model"] == "jsrt-lungs"
    assert body["model_version"] == "3" and body["task"] == "jsrt-lungs"
    assert "probabilities" not in body and "label" not in body
    expected = expected_segmentation(chest_png)
    assert body["plausible"] is True and body["warnings"] == []
    assert body["measures"] == pytest.approx(expected.measures)
    assert body["measures"]["right_area_px"] > 1000 and "right_area_mm2" not in body["measures"]
    mask = np.asarray(decoded_png(body["mask_png"]))
    assert mask.shape == (200, 160) and set(np.unique(mask)) == {0, 255}
    assert np.array_equal(mask == 255, expected.mask)
    overlay = decoded_png(body["overlay_png"])
    assert overlay.size == (160, 200) and overlay.mode == "RGB"
    assert body["image"] == {"width": 160, "height": 200, "format": "png",
                             "modality": "unknown", "notes": []}
    assert "image_png" not in body and "lungs_png" not in body


def test_segmenter_for_the_page_adds_image_and_outline_layer(lungs_client, chest_png):
    body = post_image(lungs_client, chest_png, params={"display": "true"}, model="jsrt-lungs").json()
    image, layer = decoded_png(body["image_png"]), decoded_png(body["lungs_png"])
    assert layer.mode == "RGBA" and layer.size == image.size
    alpha = np.asarray(layer)[..., 3]
    assert 0 < (alpha > 0).mean() < 0.2  # an outline, transparent elsewhere


def test_segmenter_warns_on_a_ct_slice_and_measures_in_mm(lungs_client, dicom_bytes):
    body = post_image(lungs_client, dicom_bytes, "CT_small.dcm", model="jsrt-lungs").json()
    assert body["kind"] == "segmentation" and body["plausible"] is False
    assert any("CT" in w for w in body["warnings"])
    measures = body["measures"]
    assert measures["right_area_mm2"] == pytest.approx(
        measures["right_area_px"] * 0.661468 ** 2, rel=1e-3, abs=0.1)


def test_classifier_with_lungs_gets_the_outline_layer_and_same_prediction(lungs_client,
                                                                          chest_png):
    plain = post_image(lungs_client, chest_png, params={"display": "true"}).json()
    assert not [k for k in plain if k.startswith("lungs")]  # unchanged unless asked
    body = post_image(lungs_client, chest_png, params={"display": "true"}, lungs="true").json()
    for key in ("probabilities", "label", "threshold", "prob_malignant", "image"):
        assert body[key] == plain[key]
    assert body["lungs_model"] == "jsrt-lungs" and body["lungs_plausible"] is True
    assert body["lungs_measures"] == pytest.approx(expected_segmentation(chest_png).measures)
    assert body["lungs_warnings"] == [] and "lungs_error" not in body
    layer = decoded_png(body["lungs_png"])
    assert layer.mode == "RGBA" and layer.size == decoded_png(body["image_png"]).size
    rgba = np.asarray(layer)
    drawn = rgba[..., 3] > 0
    assert drawn.any() and not drawn.all()
    assert {tuple(c) for c in rgba[drawn][:, :3]} == {(0, 220, 255), (255, 150, 0)}
    assert "kind" not in body


def test_lungs_as_a_query_parameter(lungs_client, chest_png):
    body = post_image(lungs_client, chest_png, params={"lungs": "true"}).json()
    assert "lungs_png" in body and body["label"] in ("rest", "malignant")


def test_lungs_without_a_served_segmenter_says_why(client, png_bytes):
    body = post_image(client, png_bytes, lungs="true").json()
    assert "no lung segmentation model" in body["lungs_error"]
    assert body["label"] in ("normal", "abnormal") and "lungs_png" not in body


def test_bad_lungs_flag(lungs_client, chest_png):
    response = post_image(lungs_client, chest_png, lungs="maybe")
    assert response.status_code == 422 and "'lungs'" in response.json()["error"]


def test_bad_image_for_a_segmenter_is_a_json_error(lungs_client):
    response = post_image(lungs_client, encode(np.full((80, 80), 0.5, np.float32), "PNG"),
                    model="jsrt-lungs")
    assert response.status_code == 422 and "blank" in response.json()["error"]


def test_openapi_documents_the_segmentation_answer(lungs_client):
    schema = lungs_client.get("/openapi.json").json()
    assert "SegmentationResponse" in schema["components"]["schemas"]
    description = schema["paths"][PREDICT]["post"]["description"]
    assert "mask_png" in description and "lungs_png" in description


def test_onnx_runtime_still_runs_segmenters_on_torch(tmp_path):
    from lungcad.model_dir import SPEC_FILE
    from lungcad.serving.loading import runtime_for

    segmenter = dark_pixel_segmenter
    folder = tmp_path / "seg"
    folder.mkdir()
    (folder / SPEC_FILE).write_text(json.dumps(segmenter().spec.to_dict()))
    assert runtime_for(folder, "onnx") == "torch"
    assert runtime_for(folder, "torch") == "torch"
    classifier = tmp_path / "cls"
    classifier.mkdir()
    spec = segmenter().spec.to_dict() | {"task": "ct-normal-vs-abnormal",
                                         "classes": ["normal", "abnormal"]}
    (classifier / SPEC_FILE).write_text(json.dumps(spec))
    assert runtime_for(classifier, "onnx") == "onnx"
    assert runtime_for(Path(tmp_path / "model.onnx"), "onnx") == "onnx"
