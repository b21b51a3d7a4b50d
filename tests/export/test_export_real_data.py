"""ONNX Runtime and PyTorch agree on real JSRT radiographs (read from ../shared/data, never
copied), and the web app serves an exported model with the same answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lungcad.cli import main

pytestmark = pytest.mark.data

CASES = ("JPCLN001.png", "JPCLN002.png", "JPCNN001.png", "JPCNN002.png")


@pytest.fixture(scope="module")
def jsrt_images(shared_data):
    return [shared_data / "jsrt" / "images" / name for name in CASES]


def test_predict_onnx_matches_torch_on_jsrt(lstm_model_dir, jsrt_images, tmp_path):
    out = {}
    for runtime in ("torch", "onnx"):
        out[runtime] = tmp_path / f"{runtime}.csv"
        assert main(["predict", str(lstm_model_dir), *map(str, jsrt_images), "--runtime",
                     runtime, "--out", str(out[runtime])]) == 0
    torch_table, onnx_table = pd.read_csv(out["torch"]), pd.read_csv(out["onnx"])
    probs = [c for c in torch_table.columns if c.startswith("prob_")]
    assert len(probs) == 3 and len(torch_table) == len(CASES)
    np.testing.assert_allclose(onnx_table[probs].to_numpy(), torch_table[probs].to_numpy(),
                               atol=1e-4, rtol=0)
    assert onnx_table["predicted_label"].tolist() == torch_table["predicted_label"].tolist()


def test_serve_onnx_runtime_matches_torch(ct_model_dir, jsrt_images, tmp_path):
    from fastapi.testclient import TestClient

    from lungcad.export.onnx_export import export_onnx
    from lungcad import load_model
    from lungcad.serving.app import create_app
    from lungcad.serving.settings import ServeSettings

    onnx_file = tmp_path / "ct.onnx"
    export_onnx(load_model(ct_model_dir), onnx_file)
    answers = {}
    for runtime, model in (("torch", ct_model_dir), ("onnx", onnx_file)):
        app = create_app([str(model)], ServeSettings(runtime=runtime))
        with TestClient(app, base_url="http://127.0.0.1:8000") as client:
            answers[runtime] = [client.post("/api/v1/predict", files={
                "file": (path.name, path.read_bytes(), "image/png")}).json() for path in jsrt_images]
            if runtime == "onnx":
                heat = client.post("/api/v1/predict?heatmap=true", files={
                    "file": ("x.png", jsrt_images[0].read_bytes(), "image/png")}).json()
                assert "torch" in heat["heatmap_error"]   # the prediction stands without one
    for a, b in zip(answers["torch"], answers["onnx"]):
        assert a["label"] == b["label"]
        for cls, p in a["probabilities"].items():
            assert b["probabilities"][cls] == pytest.approx(p, abs=1e-4)


def test_bundled_detector_marks_the_same_on_onnx_runtime(jsrt_images):
    """The bundled jsrt-nodules on ONNX Runtime (exported on the fly, with its cell maps): the
    same marks as on PyTorch, each within one pixel, the same scores, malignancy and image
    probability."""
    from lungcad import load_model
    from lungcad.detection.detect import detect

    on_torch, on_onnx = load_model("jsrt-nodules"), load_model("jsrt-nodules", runtime="onnx")
    assert on_onnx.network is None and on_onnx.marks_nodules
    for path in jsrt_images:
        a, b = detect(on_torch, path), detect(on_onnx, path)
        assert len(a) == len(b) and 1 <= len(a) <= on_torch.spec.detection["marks"]["peaks"]
        for fa, fb in zip(a, b):
            assert abs(fa.x - fb.x) <= 1 and abs(fa.y - fb.y) <= 1
            assert fb.score == pytest.approx(fa.score, abs=1e-4)
            assert fb.malignancy == pytest.approx(fa.malignancy, abs=1e-4)
            assert fb.radius_mm == pytest.approx(fa.radius_mm, abs=0.5)
        assert b.nodule_probability == pytest.approx(a.nodule_probability, abs=1e-4)
        assert b.malignancy_age_sex == pytest.approx(a.malignancy_age_sex, abs=1e-4)


def test_bundled_malignancy_model_on_onnx_reads_its_own_map(jsrt_images, tmp_path):
    """jsrt-malignant (the nodule-heatmap network, its image probability read from P(nodule) *
    P(malignant | nodule)): `lungcad predict` gives the same probabilities on both runtimes."""
    out = {}
    for runtime in ("torch", "onnx"):
        out[runtime] = tmp_path / f"{runtime}.csv"
        assert main(["predict", "jsrt-malignant", *map(str, jsrt_images), "--runtime", runtime,
                     "--out", str(out[runtime])]) == 0
    a, b = pd.read_csv(out["torch"]), pd.read_csv(out["onnx"])
    assert a["prob_malignant"].nunique() == len(jsrt_images)
    np.testing.assert_allclose(b["prob_malignant"], a["prob_malignant"], atol=1e-4, rtol=0)
    assert b["predicted_label"].tolist() == a["predicted_label"].tolist()
