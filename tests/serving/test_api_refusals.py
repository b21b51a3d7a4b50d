"""Refusals that say what is wrong without echoing the input (issue 27): two files to
/api/v1/modality as to /api/v1/predict, a file name too long for a multipart part header, and
long field values quoted by a short excerpt only."""

from __future__ import annotations

from test_api import assert_error

from lungcad.errors import excerpt


def test_modality_refuses_two_files_as_predict_does(client, png_bytes):
    for path in ("/api/v1/modality", "/api/v1/predict"):
        response = client.post(path, files=[("file", ("a.png", png_bytes, "image/png")),
                                            ("file", ("b.png", png_bytes, "image/png"))])
        assert_error(response, 422, "2 files", "one image per request")


def test_a_file_name_too_long_is_named_as_the_problem(client, png_bytes):
    for path in ("/api/v1/predict", "/api/v1/modality"):
        response = client.post(path, files={"file": ("x" * 5000 + ".png", png_bytes)})
        assert_error(response, 400, "file name is too long", "shorter name")
        assert "x" * 200 not in response.text


def test_an_unknown_model_id_is_quoted_by_an_excerpt(client, png_bytes):
    response = client.post("/api/v1/predict", data={"model": "m" * 100_000},
                           files={"file": ("a.png", png_bytes, "image/png")})
    assert_error(response, 404, "unknown model", "100,000 characters")
    assert len(response.json()["error"]) < 400


def test_excerpt_keeps_short_values_and_cuts_long_ones():
    assert excerpt("63") == "'63'" and excerpt(7) == "7"
    cut = excerpt("a" * 5000, limit=10)
    assert cut == "'aaaaaaaaaa'... (5,000 characters)"
