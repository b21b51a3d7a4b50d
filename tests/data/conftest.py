"""Image hashes of the data tests go to one temporary cache per session: later tests reuse what
earlier ones computed, and nothing is written under the user's home."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _hash_cache(tmp_path_factory):
    before = os.environ.get("LUNGCAD_CACHE_DIR")
    os.environ["LUNGCAD_CACHE_DIR"] = str(tmp_path_factory.mktemp("lungcad-cache"))
    yield
    if before is None:
        os.environ.pop("LUNGCAD_CACHE_DIR", None)
    else:
        os.environ["LUNGCAD_CACHE_DIR"] = before
