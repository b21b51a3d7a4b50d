"""Fixtures for the experiment tests (helpers in experiment_data.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LUNGCAD_CACHE_DIR", str(tmp_path / "cache"))
