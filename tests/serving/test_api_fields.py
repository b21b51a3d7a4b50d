"""Form fields the API used to get wrong without a word (issue 18 item 5): several `file` parts,
the aspect-ratio warning that reached only the server's stderr, and multi-frame files, for which
the API asked to "pass frame=N" without a way to do so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lungcad.domain.check import predict_image

from serving_data import encode, synthetic_image
from test_api import PREDICT, assert_error, post_image


@pytest.fixture(scope="module")
def multiframe_dicom() -> bytes:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("emri_small.dcm")).read_bytes()  # 10 frames of 64x64


def test_several_file_parts_are_refused(client, png_bytes):
    other = encode(synthetic_image(seed=5), "PNG")
    response = client.post(PREDICT, files=[("file", ("a.png", png_bytes)),
                                           ("file", ("b.png", other))])
    assert_error(response, 422, "2 files", "one image per request")


def test_squeezed_aspect_ratio_is_a_note_in_the_answer(client):
    rng = np.random.default_rng(0)
    strip = encode(rng.uniform(0.2, 0.8, (40, 10_000)).astype(np.float32), "PNG")
    response = post_image(client, strip, "strip.png", params={"model": "test-ct-binary"})
    assert response.status_code == 200, response.text
    notes = response.json()["image"]["notes"]
    assert any("unusual aspect ratio 250.00" in note and "squeezed" in note
               for note in notes), notes


def test_ordinary_aspect_ratio_has_no_such_note(client, png_bytes):
    notes = post_image(client, png_bytes).json()["image"]["notes"]
    assert not any("aspect ratio" in note for note in notes), notes


def test_multiframe_dicom_needs_a_frame(client, multiframe_dicom):
    assert_error(post_image(client, multiframe_dicom, "cine.dcm"), 422, "cine.dcm",
                 "10 frames", "frame=N")


@pytest.mark.parametrize("how", ["form", "query"])
def test_frame_field_picks_one_frame(client, multiframe_dicom, how):
    from lungcad.io import load_image

    if how == "form":
        response = post_image(client, multiframe_dicom, "cine.dcm", frame="3")
    else:
        response = post_image(client, multiframe_dicom, "cine.dcm", params={"frame": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert any("frame 3 of 10" in note for note in body["image"]["notes"]), body["image"]
    # The answer is that frame's, not another's.
    expected = {}
    for frame in (0, 3):
        array = load_image(multiframe_dicom, name="cine.dcm", frame=frame).array
        expected[frame] = predict_image(client.app.state.served["test-ct-binary"].model, array)
    assert body["probabilities"] == pytest.approx(
        {k: float(v) for k, v in expected[3].probabilities.items()}, abs=1e-6)


def test_frame_out_of_range_and_invalid(client, multiframe_dicom, png_bytes):
    assert_error(post_image(client, multiframe_dicom, "cine.dcm", frame="10"), 422,
                 "frame=10 is out of range", "0 to 9")
    assert_error(post_image(client, multiframe_dicom, "cine.dcm", frame="-1"), 422, "'frame'")
    assert_error(post_image(client, multiframe_dicom, "cine.dcm", frame="two"), 422, "'frame'")
    assert post_image(client, png_bytes, frame="0").status_code == 200  # one frame: frame 0


def test_openapi_documents_the_frame_field(client):
    schema = client.get("/openapi.json").json()
    body = schema["paths"][PREDICT]["post"]["requestBody"]["content"]["multipart/form-data"]
    ref = body["schema"]["$ref"].rsplit("/", 1)[1]
    fields = schema["components"]["schemas"][ref]["properties"]
    assert "frame" in fields and "multi-frame" in fields["frame"]["description"]
    responses = schema["paths"][PREDICT]["post"]["responses"]
    assert {"403", "408", "503"} <= set(responses)
