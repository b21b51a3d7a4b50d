"""Fixtures for the export tests (helpers in export_data.py). The ONNX cache that
lungcad.load_model(..., runtime="onnx") fills for model directories goes into tmp_path, never
the user's home."""

from __future__ import annotations

import pytest
from export_data import make_model_dir


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LUNGCAD_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def ct_model_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("model") / "ct")


@pytest.fixture(scope="module")
def lstm_model_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("model") / "lstm", "paper-cnn-lstm",
                          task="jsrt-3class", classes=("non_nodule", "benign", "malignant"),
                          threshold=None)
