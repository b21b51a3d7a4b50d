"""Fixtures for the web server tests: two small untrained ct-cnn model directories (binary and
3-class; the weights are random, which is all the server's plumbing needs) and synthetic images
in every format the page accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving_data import LOCAL, dark_pixel_segmenter, encode, serve_in_thread, synthetic_image

MODEL_CARD = """# Test CT model

A **binary** test model with `random` weights.

- Task: normal vs abnormal
- Not trained: <script>alert("card")</script> must show as text

| metric | value |
|---|---|
| AUC | n/a |
"""


def _save_model(directory: Path, name: str, task: str, classes: list[str],
                threshold: float | None, seed: int, modality: str = "ct") -> Path:
    import torch

    from lungcad.model_dir import ModelSpec, save_model_dir
    from lungcad.models import create_model
    from lungcad.preprocess import Preprocessing

    torch.manual_seed(seed)
    network = create_model("ct-cnn", num_classes=len(classes))
    spec = ModelSpec(name=name, architecture="ct-cnn", task=task, classes=classes,
                     preprocessing=Preprocessing(size=64, channels=1, mean=0.5, std=0.25),
                     threshold=threshold, threshold_rule="test value", modality=modality,
                     version="7")
    return save_model_dir(directory, network, spec, card=MODEL_CARD)


@pytest.fixture(scope="session")
def binary_model_dir(tmp_path_factory) -> Path:
    return _save_model(tmp_path_factory.mktemp("binary-model"), "test-ct-binary",
                       "ct-normal-vs-abnormal", ["normal", "abnormal"], 0.4, seed=0)


@pytest.fixture(scope="session")
def multiclass_model_dir(tmp_path_factory) -> Path:
    return _save_model(tmp_path_factory.mktemp("multi-model"), "test-ct-3class",
                       "iqothnccd-3class", ["normal", "benign", "malignant"], None, seed=1)


@pytest.fixture(scope="session")
def binary_model(binary_model_dir):
    from lungcad import load_model

    return load_model(binary_model_dir)


@pytest.fixture(scope="session")
def multiclass_model(multiclass_model_dir):
    from lungcad import load_model

    return load_model(multiclass_model_dir)


@pytest.fixture(scope="session")
def app(binary_model, multiclass_model):
    from lungcad.serving import ServeSettings, create_app

    return create_app([binary_model, multiclass_model], ServeSettings())


@pytest.fixture()
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app, base_url=LOCAL) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def radiograph_model(tmp_path_factory):
    from lungcad import load_model

    return load_model(_save_model(tmp_path_factory.mktemp("radiograph-model"), "test-cxr",
                                  "jsrt-malignant", ["rest", "malignant"], 0.5, seed=2,
                                  modality="chest radiograph"))


@pytest.fixture(scope="session")
def lungs_app(radiograph_model):
    """A radiograph classifier and a 'dark pixels are lung' segmenter named jsrt-lungs."""
    from lungcad.serving import ServeSettings, create_app

    return create_app([radiograph_model, dark_pixel_segmenter()], ServeSettings())


@pytest.fixture()
def lungs_client(lungs_app):
    from fastapi.testclient import TestClient

    with TestClient(lungs_app, base_url=LOCAL) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def live_server(app):
    """The app under a real uvicorn, on a free port of 127.0.0.1, in a background thread."""
    yield from serve_in_thread(app)


@pytest.fixture(scope="session")
def lungs_live_server(lungs_app):
    yield from serve_in_thread(lungs_app)


@pytest.fixture(scope="session")
def png_bytes() -> bytes:
    return encode(synthetic_image(), "PNG")


@pytest.fixture(scope="session")
def jpeg_bytes() -> bytes:
    return encode(synthetic_image(seed=1), "JPEG")


@pytest.fixture(scope="session")
def dicom_bytes() -> bytes:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("CT_small.dcm")).read_bytes()


@pytest.fixture(scope="session")
def jsrt_bytes(tmp_path_factory) -> bytes:
    from lungcad.io.jsrt import write_jsrt_raw
    from lungcad.preprocess import resize_area

    path = tmp_path_factory.mktemp("jsrt") / "JPCLN001.IMG"
    write_jsrt_raw(resize_area(synthetic_image(256, 256, seed=2), 2048), path)
    return path.read_bytes()
