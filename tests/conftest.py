"""Shared fixtures. Tests that need the real data use ``shared_data`` and skip, with a reason,
only where ../shared/data is absent (a user's fresh machine); CI always has it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LUNGCAD_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "jsrt" / "labels.csv").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the shared data at {SHARED_DATA}")
        pytest.skip(f"real data not found at {SHARED_DATA} (set LUNGCAD_SHARED_DATA or put "
                    "../shared/data beside the checkout)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Keep CPU tests from oversubscribing the 2-core CI machine."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
