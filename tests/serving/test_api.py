"""The REST API: every supported format on the happy path, and every bad input answered with a
4xx status and a JSON ``{"error": message}`` that says what was wrong."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from serving_data import (LOCAL, PREDICT, decoded_png, encode, png_claiming, post_image,
                          synthetic_image)



def assert_error(response, status: int, *fragments: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    for fragment in fragments:
        assert fragment in body["error"], body["error"]


# --- service endpoints --------------------------------------------------------------------------

def test_health_lists_the_served_models(client):
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["models"] == ["test-ct-binary", "test-ct-3class"]
    assert "not a medical device" in body["disclaimer"]


def test_models_describe_classes_threshold_and_card(client):
    body = client.get("/api/v1/models").json()
    assert body["default"] == "auto"  # each image to a model of its modality
    binary, multi = body["models"]
    assert binary["id"] == "test-ct-binary" and binary["version"] == "7"
    assert binary["classes"] == ["normal", "abnormal"] and binary["threshold"] == 0.4
    assert binary["task"] == "ct-normal-vs-abnormal" and binary["modality"] == "ct"
    assert binary["card"].startswith("# Test CT model")
    assert multi["classes"] == ["normal", "benign", "malignant"] and multi["threshold"] is None
    assert binary["runtime"] == "torch" and binary["heatmaps"] is True


def test_duplicate_model_names_get_distinct_ids(binary_model):
    from fastapi.testclient import TestClient

    from lungcad.serving import create_app

    with TestClient(create_app([binary_model, binary_model]), base_url=LOCAL) as client:
        assert client.get("/api/v1/health").json()["models"] == ["test-ct-binary",
                                                                 "test-ct-binary-2"]


def test_create_app_loads_model_directories_by_path(binary_model_dir):
    from fastapi.testclient import TestClient

    from lungcad.serving import create_app

    with TestClient(create_app([str(binary_model_dir)]), base_url=LOCAL) as client:
        assert client.get("/api/v1/models").json()["models"][0]["name"] == "test-ct-binary"


def test_create_app_needs_a_model():
    from lungcad.errors import LungcadError
    from lungcad.serving import create_app

    with pytest.raises(LungcadError, match="no model to serve"):
        create_app([])


# --- predictions: every format, same answer as the model itself ---------------------------------

@pytest.mark.parametrize("fixture, name, fmt, size, modality", [
    ("png_bytes", "chest.png", "png", (128, 160), "unknown"),
    ("jpeg_bytes", "chest.jpg", "jpeg", (128, 160), "unknown"),
    ("dicom_bytes", "CT_small.dcm", "dicom", (128, 128), "ct"),
    ("jsrt_bytes", "JPCLN001.IMG", "jsrt-raw", (2048, 2048), "radiograph"),
])
def test_predict_each_format_matches_the_model(request, client, binary_model, fixture, name,
                                               fmt, size, modality):
    from lungcad.io import load_image

    data = request.getfixturevalue(fixture)
    response = post_image(client, data, name, params={"model": "test-ct-binary"})  # not routing
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "test-ct-binary" and body["model_version"] == "7"
    assert body["image"]["format"] == fmt
    assert (body["image"]["width"], body["image"]["height"]) == size
    assert body["image"]["modality"] == modality
    expected = binary_model.predict(load_image(data, name=name).array)
    assert body["probabilities"] == pytest.approx(expected.probabilities, abs=1e-6)
    assert body["prob_normal"] == body["probabilities"]["normal"]
    assert body["prob_abnormal"] == body["probabilities"]["abnormal"]
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert body["threshold"] == 0.4
    assert body["label"] == ("abnormal" if body["prob_abnormal"] >= 0.4 else "normal")
    assert body["label"] == expected.label
    assert "heatmap_png" not in body and "image_png" not in body


def test_format_is_decided_by_content_not_name(client, png_bytes):
    body = post_image(client, png_bytes, "looks-like.dcm").json()
    assert body["image"]["format"] == "png"


def test_model_chosen_by_form_field_or_query(client, multiclass_model, png_bytes):
    from lungcad.io import load_image

    expected = multiclass_model.predict(load_image(png_bytes).array)
    for response in (post_image(client, png_bytes, model="test-ct-3class"),
                     post_image(client, png_bytes, params={"model": "test-ct-3class"})):
        body = response.json()
        assert response.status_code == 200 and body["model"] == "test-ct-3class"
        assert list(body["probabilities"]) == ["normal", "benign", "malignant"]
        assert body["threshold"] is None
        assert body["label"] == max(body["probabilities"], key=body["probabilities"].get)
        assert body["probabilities"] == pytest.approx(expected.probabilities, abs=1e-6)


def test_heatmap_is_a_png_of_the_image(client, png_bytes):
    body = post_image(client, png_bytes, params={"heatmap": "true"}).json()
    overlay = decoded_png(body["heatmap_png"])
    assert overlay.size == (128, 160) and overlay.mode == "RGB"
    assert body["heatmap_method"] == "gradcam"
    pixels = np.asarray(overlay).astype(int)
    # The heatmap is blended in colour, so the overlay is no longer gray.
    assert np.abs(pixels[..., 0] - pixels[..., 2]).max() > 20
    assert "heatmap_layer_png" not in body


def test_heatmap_as_form_field(client, png_bytes):
    body = post_image(client, png_bytes, heatmap="true").json()
    assert decoded_png(body["heatmap_png"]).size == (128, 160)


def test_display_images_are_shrunk_for_the_page(client, jsrt_bytes):
    body = post_image(client, jsrt_bytes, "JPCLN001.IMG",
                      params={"heatmap": "true", "display": "true"}).json()
    image = decoded_png(body["image_png"])
    layer = decoded_png(body["heatmap_layer_png"])
    overlay = decoded_png(body["heatmap_png"])
    assert image.mode == "L" and layer.mode == "RGBA"
    assert image.size == layer.size == overlay.size == (768, 768)  # from 2048x2048


def test_missing_heatmap_support_keeps_the_prediction(client, png_bytes, monkeypatch):
    from lungcad.serving import heatmap

    def unavailable():
        raise heatmap.HeatmapUnavailable("heatmaps are not available in this installation (test)")

    monkeypatch.setattr(heatmap, "_explain_module", unavailable)
    response = post_image(client, png_bytes, params={"heatmap": "true"})
    assert response.status_code == 200
    body = response.json()
    assert "heatmap_png" not in body and body["label"] in ("normal", "abnormal")
    assert body["heatmap_error"] == "heatmaps are not available in this installation (test)"
    assert [m["heatmaps"] for m in client.get("/api/v1/models").json()["models"]] == [False,
                                                                                      False]


def test_image_notes_are_reported(client):
    rgb = np.stack([synthetic_image()] * 3, axis=-1)
    rgb[10:30, 10:60] = [1.0, 0.0, 0.0]  # a red annotation burned into the picture
    buffer = io.BytesIO()
    Image.fromarray(np.round(rgb * 255).astype(np.uint8), mode="RGB").save(buffer, format="PNG")
    body = post_image(client, buffer.getvalue()).json()
    assert any("colour" in note for note in body["image"]["notes"])


# --- bad input: status and message ---------------------------------------------------------------

def test_empty_file(client):
    assert_error(post_image(client, b"", "empty.png"), 422, "empty.png is empty (0 bytes)")


def test_not_an_image(client):
    assert_error(post_image(client, b"hello, this is text\n" * 10, "notes.txt"), 422,
                 "notes.txt: unrecognised image format")


def test_truncated_png(client, png_bytes):
    assert_error(post_image(client, png_bytes[: len(png_bytes) // 2], "cut.png"), 422,
                 "cut.png", "truncated or damaged")


def test_truncated_dicom(client, dicom_bytes):
    assert_error(post_image(client, dicom_bytes[:2000], "cut.dcm"), 422, "cut.dcm")


def test_truncated_jsrt_raw(client, jsrt_bytes):
    assert_error(post_image(client, jsrt_bytes[:-10], "JPCLN001.IMG"), 422,
                 "is not a JSRT raw image", "exactly 8,388,608 bytes")


def test_unknown_model(client, png_bytes):
    assert_error(post_image(client, png_bytes, model="nope"), 404, "unknown model 'nope'",
                 "test-ct-binary, test-ct-3class")


def test_missing_file_field(client):
    assert_error(client.post(PREDICT, data={"model": "test-ct-binary"}), 422,
                 "missing field 'file'")


def test_no_body_at_all(client):
    assert_error(client.post(PREDICT), 422, "missing field 'file'")


def test_file_sent_as_text(client):
    assert_error(client.post(PREDICT, data={"file": "not a file"}), 422,
                 "field 'file' must be a file upload")


def test_bad_heatmap_flag(client, png_bytes):
    assert_error(post_image(client, png_bytes, params={"heatmap": "maybe"}), 422,
                 "invalid 'heatmap'")


def test_too_many_pixels_refused_before_decoding(client):
    bomb = png_claiming(10_000, 10_000)  # 100 M pixels claimed, a few hundred bytes sent
    assert len(bomb) < 1000
    assert_error(post_image(client, bomb, "bomb.png"), 422, "bomb.png",
                 "claims 100,000,000 pixels", "limit of 40,000,000 (max_pixels)",
                 "decompression bomb")


def test_max_pixels_setting(binary_model, png_bytes):
    from fastapi.testclient import TestClient

    from lungcad.serving import ServeSettings, create_app

    with TestClient(create_app([binary_model], ServeSettings(max_pixels=10_000)),
                    base_url=LOCAL) as client:
        assert_error(post_image(client, png_bytes), 422, "claims 20,480 pixels",
                     "limit of 10,000")


def test_blank_image(client):
    blank = encode(np.full((100, 100), 0.5, np.float32), "PNG")
    assert_error(post_image(client, blank, "blank.png"), 422, "blank.png: the image is blank")


def test_too_small_image(client):
    small = encode(synthetic_image(16, 16), "PNG")
    assert_error(post_image(client, small, "tiny.png"), 422, "16x16 px is too small")


def test_values_out_of_range(client):
    raw = io.BytesIO()
    np.save(raw, synthetic_image() * 4095)  # raw detector values, not [0, 1]
    assert_error(post_image(client, raw.getvalue(), "raw.npy"), 422,
                 "float arrays must already be in [0, 1]")


def test_client_file_name_is_never_a_path(client):
    response = post_image(client, b"not an image at all", "../../etc/passwd")
    assert_error(response, 422, "passwd: unrecognised image format")
    assert "../" not in response.json()["error"]


def test_unknown_route_and_wrong_method(client):
    assert_error(client.get("/api/v1/nothing"), 404, "the API is under /api/v1")
    assert_error(client.get(PREDICT), 405, "Method Not Allowed")


# --- upload size limit -----------------------------------------------------------------------------

@pytest.fixture()
def small_limit_client(binary_model):
    from fastapi.testclient import TestClient

    from lungcad.serving import ServeSettings, create_app

    app = create_app([binary_model], ServeSettings(max_upload_bytes=100_000))
    with TestClient(app, base_url=LOCAL) as client:
        yield client


def test_upload_over_the_limit_by_content_length(small_limit_client):
    assert_error(post_image(small_limit_client, b"\x00" * 200_000, "big.png"), 413,
                 "upload too large", "limit is 0.0953674 MB")


def test_upload_over_the_limit_without_content_length(small_limit_client):
    def chunks():
        for _ in range(50):
            yield b"x" * 10_000

    response = small_limit_client.post(
        PREDICT, content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert_error(response, 413, "upload too large")


def test_upload_under_the_limit_passes(small_limit_client, png_bytes):
    assert len(png_bytes) < 100_000
    assert post_image(small_limit_client, png_bytes).status_code == 200


def _run_asgi(app, scope, receive):
    import anyio

    sent = []

    async def send(message):
        sent.append(message)

    anyio.run(app, scope, receive, send)
    return sent


def test_declared_oversize_body_is_never_read():
    from lungcad.serving.limits import BodySizeLimitMiddleware

    async def inner(scope, receive, send):  # pragma: no cover - must not be reached
        raise AssertionError("the app behind the limit was called")

    async def receive():  # pragma: no cover - must not be reached
        raise AssertionError("the body was read")

    scope = {"type": "http", "method": "POST", "path": PREDICT,
             "headers": [(b"content-length", b"1000001")]}
    sent = _run_asgi(BodySizeLimitMiddleware(inner, max_bytes=1_000_000), scope, receive)
    assert sent[0]["status"] == 413


def test_streamed_body_stops_at_the_first_chunk_past_the_limit():
    from starlette.exceptions import HTTPException

    from lungcad.serving.limits import BodySizeLimitMiddleware

    reads = 0

    async def receive():
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"x" * 400, "more_body": True}

    async def inner(scope, receive_, send):
        while True:  # an app that would read forever
            await receive_()

    scope = {"type": "http", "method": "POST", "path": PREDICT, "headers": []}
    with pytest.raises(HTTPException) as caught:
        _run_asgi(BodySizeLimitMiddleware(inner, max_bytes=1000), scope, receive)
    assert caught.value.status_code == 413
    assert reads == 3  # 400, 800, 1200 > 1000: stopped there


# --- the page and the docs -------------------------------------------------------------------------

def test_page_and_assets_are_local(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Research software, not a medical device." in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        response = client.get(asset)
        assert response.status_code == 200
        text = response.text
        # No CDN, no external fonts: nothing is loaded from another origin.
        assert "http://" not in text and "https://" not in text and "@import" not in text
    assert "http://" not in page.text and "https://" not in page.text
    assert "innerHTML" not in client.get("/static/app.js").text


def test_docs_work_offline(client):
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "/docs-assets/swagger-ui-bundle.js" in docs.text
    assert "cdn." not in docs.text and "googleapis" not in docs.text
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    assert client.get("/docs-assets/swagger-ui.css").status_code == 200
    schema = client.get("/openapi.json").json()
    assert {"/api/v1/predict", "/api/v1/models", "/api/v1/health"} <= set(schema["paths"])
    responses = schema["paths"]["/api/v1/predict"]["post"]["responses"]
    assert {"200", "404", "413", "422"} <= set(responses)


def _colour_gradient() -> bytes:
    yy, xx = np.mgrid[:600, :800]
    rgb = np.stack([xx / 800, yy / 600, 1 - xx / 800], axis=-1)
    buffer = io.BytesIO()
    Image.fromarray((rgb * 255).astype(np.uint8), "RGB").save(buffer, "PNG")
    return buffer.getvalue()


def test_auto_sends_an_image_of_neither_modality_to_no_model_and_says_why(client):
    """The default (auto) on a server of several models: a colour gradient is neither a chest
    radiograph nor a CT slice, so no model is picked for it, and the answer says how to read
    it anyway; named, a model reads it."""
    response = post_image(client, _colour_gradient(), "gradient.png")
    assert response.status_code == 422
    error = response.json()["error"]
    assert "gradient.png: sent to no model" in error and "neither" in error
    assert "model=" in error
    named = post_image(client, _colour_gradient(), "gradient.png",
                       params={"model": "test-ct-binary"})
    assert named.status_code == 200 and named.json()["model"] == "test-ct-binary"


def test_a_server_of_one_model_reads_every_image_with_it(binary_model_dir):
    from fastapi.testclient import TestClient

    from lungcad.serving import create_app

    with TestClient(create_app([str(binary_model_dir)]), base_url=LOCAL) as one:
        response = post_image(one, _colour_gradient(), "gradient.png")
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "test-ct-binary"
