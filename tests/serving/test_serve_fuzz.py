"""Fuzzing the API: schemathesis generates requests from the OpenAPI schema (valid and invalid),
and Hypothesis sends random and corrupted image bytes. Never a 5xx; every error is JSON
``{"error": message}``; every answer matches the documented schema. Example counts are bounded
to keep the file fast."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ_SETTINGS = settings(max_examples=30, deadline=None, derandomize=True,
                         suppress_health_check=list(HealthCheck))


def assert_json_error_if_client_error(response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]


@pytest.fixture(scope="module")
def fuzz_app(binary_model, multiclass_model):
    """The app, also answering to the host name schemathesis' ASGI client sends."""
    from lungcad.serving import ServeSettings, create_app

    return create_app([binary_model, multiclass_model],
                      ServeSettings(allowed_hosts=("testserver",)))


@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE,
                                  schemathesis.GenerationMode.NEGATIVE])
def test_api_matches_its_schema_and_never_fails(fuzz_app, mode):
    from schemathesis.checks import (content_type_conformance, not_a_server_error,
                                     response_schema_conformance, status_code_conformance)

    # Driven through its Hypothesis strategy (schemathesis' pytest plugin lags pytest 9).
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)

    @FUZZ_SETTINGS
    @given(case=schema.as_strategy(mode))
    def check(case):
        response = case.call_and_validate(checks=[not_a_server_error, status_code_conformance,
                                                  content_type_conformance,
                                                  response_schema_conformance])
        assert_json_error_if_client_error(response)

    check()


def _corruptions(original: bytes):
    """Strategies for damaged copies of a real image: cut short, bytes flipped, junk appended."""
    n = len(original)
    cut = st.integers(0, n).map(lambda k: original[:k])
    flipped = st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, 255)), min_size=1,
                       max_size=8).map(lambda edits: _apply(original, edits))
    appended = st.binary(max_size=64).map(lambda junk: original + junk)
    return st.one_of(cut, flipped, appended)


def _apply(original: bytes, edits) -> bytes:
    data = bytearray(original)
    for index, value in edits:
        data[index] = value
    return bytes(data)


@pytest.mark.parametrize("fixture", ["png_bytes", "jpeg_bytes", "dicom_bytes"])
def test_damaged_images_get_json_errors_not_crashes(request, client, fixture):
    original = request.getfixturevalue(fixture)

    @FUZZ_SETTINGS
    @given(data=st.one_of(st.binary(max_size=512), _corruptions(original)),
           name=st.sampled_from(["x.png", "x.jpg", "x.dcm", "x.IMG", "x.npy", "", "../x"]))
    def check(data, name):
        response = client.post("/api/v1/predict", params={"heatmap": "true"},
                               files={"file": (name or "f", data, "application/octet-stream")})
        assert_json_error_if_client_error(response)
        if response.status_code == 200:
            body = response.json()
            assert abs(sum(body["probabilities"].values()) - 1.0) < 1e-4

    check()
