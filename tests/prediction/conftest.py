"""Fixtures for the predict tests (helpers in predict_data.py)."""

from __future__ import annotations

import pytest
from predict_data import make_dataset, make_model_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("model") / "tiny-ct")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """(dataset folder, split file): 12 JSRT-like images and one whose label no task knows."""
    return make_dataset(tmp_path_factory.mktemp("data") / "synth", extra_labels=("unknown",))
