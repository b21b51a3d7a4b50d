"""A served nodule detector: its answer carries the marks (``findings``) in the uploaded image's
own pixel coordinates, from one pass of the network; a classifier's answer has no findings."""

from __future__ import annotations

import numpy as np
import pytest

from detector_testing import DETECTOR_NAME, no_lung_model, save_detector_dir
from serving_data import LOCAL, encode, synthetic_image

FINDING_KEYS = {"x", "y", "radius_mm", "radius_px", "score", "malignancy"}


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    from lungcad import load_model

    return load_model(save_detector_dir(tmp_path_factory.mktemp("detector") / "model"))


@pytest.fixture(scope="module")
def detector_client(detector, binary_model):
    from fastapi.testclient import TestClient

    from lungcad.serving import ServeSettings, create_app

    with no_lung_model(), TestClient(create_app([detector, binary_model], ServeSettings()),
                                     base_url=LOCAL) as client:
        yield client


def _post(client, image: np.ndarray, model: str = DETECTOR_NAME, **params):
    response = client.post("/api/v1/predict", params={"model": model, **params},
                           files={"file": ("chest.png", encode(image, "PNG"), "image/png")})
    assert response.status_code == 200, response.text
    return response.json()


def test_models_say_which_model_marks(detector_client):
    models = {m["id"]: m for m in detector_client.get("/api/v1/models").json()["models"]}
    assert models[DETECTOR_NAME]["kind"] == "detector"
    assert models[DETECTOR_NAME]["marks"] is True
    assert models["test-ct-binary"]["marks"] is False


def test_detector_answer_has_findings_in_image_pixels(detector_client):
    image = synthetic_image(200, 160)
    body = _post(detector_client, image)
    assert (body["image"]["width"], body["image"]["height"]) == (160, 200)
    findings = body["findings"]
    assert 1 <= len(findings) <= 5  # the model's marks settings: 5 peaks at most
    for f in findings:
        assert set(f) == FINDING_KEYS
        assert 0 <= f["x"] < 160 and 0 <= f["y"] < 200
        assert 0.0 <= f["score"] <= 1.0 and 0.0 <= f["malignancy"] <= 1.0
        assert f["radius_px"] == pytest.approx(f["radius_mm"] / body["mm_per_pixel"], abs=0.02)
    scores = [f["score"] for f in findings]
    assert scores == sorted(scores, reverse=True)
    # the image-level probability is the strongest cell: the best mark's score, same pass
    assert body["probabilities"]["nodule"] == pytest.approx(scores[0], abs=1e-3)
    assert body["label"] == ("nodule" if scores[0] >= 0.5 else "no_nodule")
    assert any("assumed" in w for w in body["findings_warnings"])  # no spacing in a PNG


def test_findings_scale_with_the_uploaded_image(detector_client):
    small = synthetic_image(256, 256, seed=3)
    large = np.kron(small, np.ones((2, 2), np.float32))  # the same picture at twice the size
    a, b = _post(detector_client, small), _post(detector_client, large)
    assert len(a["findings"]) == len(b["findings"]) >= 1
    for fa, fb in zip(a["findings"], b["findings"]):
        # pixel centres: (x + 0.5) scales with the image
        assert fb["x"] + 0.5 == pytest.approx(2 * (fa["x"] + 0.5), abs=0.02)
        assert fb["y"] + 0.5 == pytest.approx(2 * (fa["y"] + 0.5), abs=0.02)
        assert fb["radius_px"] == pytest.approx(2 * fa["radius_px"], abs=0.05)
        assert fb["radius_mm"] == pytest.approx(fa["radius_mm"], abs=0.01)
        assert fb["score"] == pytest.approx(fa["score"], abs=1e-3)


def test_one_network_pass_per_request(detector_client, detector, monkeypatch):
    calls = []
    cls = type(detector.network)  # patched on the class: undone without leftovers
    original = cls.cell_logits
    monkeypatch.setattr(cls, "cell_logits", lambda self, x: calls.append(1) or original(self, x))
    monkeypatch.setattr(cls, "forward", lambda self, x: pytest.fail("a second pass (forward)"))
    body = _post(detector_client, synthetic_image())
    assert len(calls) == 1 and body["findings"]


def test_detector_heatmap_and_page_fields(detector_client):
    body = _post(detector_client, synthetic_image(), heatmap="true", display="true")
    assert body["findings"] and body["image_png"] and body["heatmap_png"]


def test_classifier_answer_has_no_findings(detector_client):
    body = _post(detector_client, synthetic_image(), model="test-ct-binary")
    assert "findings" not in body and "findings_error" not in body


def _onnx_client(model, cache):
    from fastapi.testclient import TestClient

    from lungcad.serving import ServeSettings, create_app

    with pytest.MonkeyPatch.context() as patch:
        # A model directory is exported on the fly; keep that cache out of the home folder.
        patch.setenv("LUNGCAD_CACHE_DIR", str(cache))
        app = create_app([str(model)], ServeSettings(runtime="onnx", threads=1))
    return TestClient(app, base_url=LOCAL)


def test_detector_on_onnx_runtime_marks_as_on_torch(detector, detector_client,
                                                    tmp_path_factory):
    """On ONNX Runtime the export's cell maps give the same marks, scores and probabilities."""
    image = synthetic_image(seed=5)
    with no_lung_model(), _onnx_client(detector.directory,
                                       tmp_path_factory.mktemp("cache")) as client:
        described = client.get("/api/v1/models").json()["models"][0]
        body = _post(client, image)
    assert described["runtime"] == "onnx" and described["kind"] == "detector"
    assert described["marks"] is True and "findings_error" not in body
    torch_body = _post(detector_client, image)
    assert body["probabilities"] == pytest.approx(torch_body["probabilities"], abs=1e-4)
    assert len(body["findings"]) == len(torch_body["findings"]) >= 1
    for a, b in zip(body["findings"], torch_body["findings"]):
        assert abs(a["x"] - b["x"]) <= 1 and abs(a["y"] - b["y"]) <= 1
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)
        assert a["malignancy"] == pytest.approx(b["malignancy"], abs=1e-4)


def test_an_onnx_file_without_cell_maps_says_why_it_gives_no_marks(detector, tmp_path):
    """An ONNX export made before detectors carried their cell maps: probabilities, no marks,
    and the answer says why and what to do."""
    import onnx

    from lungcad.export.common import CELLS_NAME
    from lungcad.export.onnx_export import export_onnx

    path = tmp_path / "old.onnx"
    export_onnx(detector, path)
    proto = onnx.load(str(path))
    kept = [o for o in proto.graph.output if o.name != CELLS_NAME]
    del proto.graph.output[:]
    proto.graph.output.extend(kept)
    onnx.save(proto, str(path))
    with _onnx_client(path, tmp_path / "cache") as client:
        described = client.get("/api/v1/models").json()["models"][0]
        body = _post(client, synthetic_image(), model=described["id"])
    assert described["marks"] is False and "findings" not in body
    assert "no cell maps" in body["findings_error"] and "lungcad export" in body["findings_error"]
    assert any("no cell maps" in note for note in body["image"]["notes"])
    assert 0.0 <= body["probabilities"]["nodule"] <= 1.0


def test_openapi_describes_findings(detector_client):
    schemas = detector_client.get("/openapi.json").json()["components"]["schemas"]
    assert set(schemas["FindingResponse"]["properties"]) == FINDING_KEYS
    assert "findings" in schemas["PredictResponse"]["properties"]
    assert "marks" in schemas["ModelInfoResponse"]["properties"]
    # a real answer parses as the documented schema, its marks as FindingResponse
    from lungcad.serving.schemas import FindingResponse, ModelsResponse, PredictResponse

    body = _post(detector_client, synthetic_image())
    parsed = PredictResponse.model_validate(body)
    assert parsed.findings and all(isinstance(f, FindingResponse) for f in parsed.findings)
    assert parsed.findings[0].model_dump() == body["findings"][0]
    ModelsResponse.model_validate(detector_client.get("/api/v1/models").json())


def test_age_and_sex_fields_give_the_malignancy_with_age_and_sex(tmp_path):
    from fastapi.testclient import TestClient

    from detector_testing import CLINICAL
    from lungcad import load_model
    from lungcad.serving import ServeSettings, create_app

    model = load_model(save_detector_dir(tmp_path / "model", clinical=CLINICAL))
    image = encode(synthetic_image(128, 128), "PNG")
    with no_lung_model(), TestClient(create_app([model], ServeSettings()),
                                     base_url=LOCAL) as client:
        def post(**fields):
            return client.post("/api/v1/predict", data=fields,
                               files={"file": ("chest.png", image, "image/png")})

        young, old, missing = post(age="30", sex="F"), post(age="080Y", sex="F"), post()
        assert young.status_code == old.status_code == missing.status_code == 200
        young, old, missing = young.json(), old.json(), missing.json()
        assert young["malignancy"] == old["malignancy"]  # the image-only score ignores age
        assert old["malignancy_age_sex"] > young["malignancy_age_sex"]  # coef_age > 0
        assert young["age_sex_note"] == "" and "age" in missing["age_sex_note"]
        bad = post(age="old")
        assert bad.status_code == 422 and "is not an age" in bad.text
        assert post(sex="X").status_code == 422
        # A huge field is quoted by a short excerpt, never echoed whole.
        for huge in (post(age="9" * 1_000_000), post(sex="Q" * 1_000_000)):
            assert huge.status_code == 422
            assert len(huge.json()["error"]) < 300 and "1,000,000 characters" in huge.text
