"""REST ``model=auto`` (issue 23): the default; each image goes to a served model of its
modality, where the first served model used to refuse a radiograph with 422 "use auto"."""

from __future__ import annotations

import pytest

from serving_data import LOCAL


@pytest.fixture(scope="module")
def mixed_client():
    from fastapi.testclient import TestClient
    from pydicom.data import get_testdata_file

    import lungcad
    from lungcad.serving import ServeSettings, create_app

    models = [lungcad.load_model(n) for n in ("chest-ct-4class", "jsrt-malignant")]
    files = {m: get_testdata_file(f) for m, f in (("ct", "CT_small.dcm"),
                                                  ("radiograph", "RG1_UNCI.dcm"))}
    with TestClient(create_app(models, ServeSettings()), base_url=LOCAL) as client:
        yield client, files


def _post(client, path, **params):
    with open(path, "rb") as f:
        return client.post("/api/v1/predict", files={"file": ("x.dcm", f.read())}, **params)


def test_auto_is_the_default_and_picks_the_model_of_the_images_modality(mixed_client):
    client, files = mixed_client
    assert client.get("/api/v1/models").json()["default"] == "auto"
    for how in ({}, {"data": {"model": "auto"}}, {"params": {"model": "auto"}}):
        radiograph = _post(client, files["radiograph"], **how)
        assert radiograph.status_code == 200, radiograph.text
        body = radiograph.json()
        assert body["model"] == "jsrt-malignant"
        assert body["auto"]["modality"] == "radiograph" and body["auto"]["source"].startswith(
            "DICOM")
        assert body["in_training_data"] is False  # a held-out image for this model
    ct = _post(client, files["ct"])
    assert ct.status_code == 200 and ct.json()["model"] == "chest-ct-4class"
    # a model named by hand is still refused another modality, with the way out
    refused = _post(client, files["radiograph"], data={"model": "chest-ct-4class"})
    assert refused.status_code == 422 and "auto" in refused.json()["error"]
