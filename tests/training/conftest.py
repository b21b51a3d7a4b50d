"""Fixtures for training tests (the data helpers are in training_data.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from training_data import make_dataset


@pytest.fixture
def synthetic(tmp_path, monkeypatch) -> tuple[Path, Path]:
    monkeypatch.setenv("LUNGCAD_CACHE_DIR", str(tmp_path / "cache"))
    return make_dataset(tmp_path / "synth")
