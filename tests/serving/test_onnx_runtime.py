"""`lungcad serve --runtime onnx`: the same API on ONNX Runtime, answers matching PyTorch's, and
predictions without heatmaps (which need the PyTorch network) rather than errors."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def onnx_client(binary_model_dir, tmp_path_factory):
    from fastapi.testclient import TestClient

    from lungcad.serving import ServeSettings, create_app

    with pytest.MonkeyPatch.context() as patch:
        # The model directory is exported on the fly; keep that cache out of the home folder.
        patch.setenv("LUNGCAD_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        app = create_app([str(binary_model_dir)], ServeSettings(runtime="onnx", threads=1))
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        yield client


def test_onnx_answers_match_torch(onnx_client, binary_model, png_bytes, dicom_bytes):
    from lungcad.io import load_image

    for data in (png_bytes, dicom_bytes):
        response = onnx_client.post("/api/v1/predict", files={"file": ("x", data)})
        assert response.status_code == 200, response.text
        body = response.json()
        expected = binary_model.predict(load_image(data).array)
        assert body["probabilities"] == pytest.approx(expected.probabilities, abs=1e-4)
        assert body["threshold"] == 0.4 and body["model"] == "test-ct-binary"


def test_onnx_models_report_no_heatmaps(onnx_client):
    model = onnx_client.get("/api/v1/models").json()["models"][0]
    assert model["runtime"] == "onnx" and model["heatmaps"] is False
    assert model["card"].startswith("# Test CT model")


def test_onnx_heatmap_request_still_predicts(onnx_client, png_bytes):
    response = onnx_client.post("/api/v1/predict", params={"heatmap": "true"},
                                files={"file": ("x.png", png_bytes)})
    assert response.status_code == 200
    body = response.json()
    assert "heatmap_png" not in body
    assert "saliency maps need the PyTorch network" in body["heatmap_error"]
    assert "--runtime torch" in body["heatmap_error"]


def test_onnx_runtime_missing_is_a_clear_error(binary_model_dir, monkeypatch):
    import builtins

    import lungcad
    from lungcad.errors import LungcadError

    real_import = builtins.__import__

    def no_onnxruntime(name, *args, **kwargs):
        if name == "onnxruntime" or name.startswith("lungcad.export"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    with pytest.raises(LungcadError, match="--runtime onnx needs ONNX Runtime"):
        lungcad.load_model(binary_model_dir, "onnx")
