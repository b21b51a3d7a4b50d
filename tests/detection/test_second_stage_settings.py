"""``detect(..., second_stage=...)`` changes a two-stage detector's settings and is refused,
before any network runs, by a one-stage detector."""

from __future__ import annotations

import numpy as np
import pytest

from lungcad.errors import LungcadError


def test_a_one_stage_detector_refuses_second_stage_settings(tmp_path, monkeypatch):
    from detector_testing import save_detector_dir

    from lungcad import load_model
    from lungcad.detection.detect import detect

    model = load_model(save_detector_dir(tmp_path / "detector"))
    image = np.random.default_rng(0).random((128, 128)).astype(np.float32)
    plain = detect(model, image, lungs=None)
    assert plain.candidates == [] and plain.candidate_p2.size == 0   # no second stage
    monkeypatch.setattr(model, "cell_maps", lambda *a: pytest.fail("the network ran"))
    with pytest.raises(LungcadError, match="one-stage detector"):
        detect(model, image, lungs=None, second_stage={"candidates": 50})
    with pytest.raises(LungcadError, match="one-stage detector"):           # the Python API
        model.detect(image, second_stage={"candidates": 50})
