"""A detector's marks on pictures: the circle-drawing helper, and ``lungcad explain``'s overlay
of a detector (its marks drawn over the heatmap)."""

from __future__ import annotations

import numpy as np
import pytest

from detector_testing import chest_png, no_lung_model, save_detector_dir


def _marked(rgb: np.ndarray) -> np.ndarray:
    """Pixels in the marks' yellow."""
    from lungcad.explain.marks import MARK_COLOUR

    return np.all(rgb == np.array(MARK_COLOUR, np.uint8), axis=-1)


def test_draw_marks_puts_a_circle_of_the_marks_radius_where_it_is():
    from lungcad.explain.marks import draw_marks, marks_text
    from lungcad.findings import Finding

    rgb = np.zeros((200, 300, 3), np.uint8)
    mark = Finding(x=99.5, y=79.5, radius_mm=10.0, score=0.8, malignancy=0.3)
    drawn = _marked(draw_marks(rgb, [mark], mm_per_pixel=0.5))  # radius 20 px
    rows, cols = np.nonzero(drawn)
    ring = np.hypot(rows - 79.5, cols - 99.5)
    on_ring = np.abs(ring - 20) <= 2
    assert on_ring.sum() > 80  # the circle (the score's label is off the ring)
    assert drawn[80, 100] == 0  # a ring, not a disc
    # scaled to a picture twice the size: the circle moves and grows with it
    big = _marked(draw_marks(np.zeros((400, 600, 3), np.uint8), [mark], 0.5, scale=2.0))
    rows, cols = np.nonzero(big)
    assert (np.abs(np.hypot(rows - 159.5, cols - 199.5) - 40) <= 2).sum() > 150
    # below the minimum score: not drawn; the input is never changed
    assert not _marked(draw_marks(rgb, [mark], 0.5, min_score=0.9)).any()
    assert not rgb.any()
    assert marks_text([mark], "m") == "m: 1 mark (circles), best score 0.80"
    assert marks_text([], "m") == "m: no nodule marks"


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    from lungcad import load_model

    return load_model(save_detector_dir(tmp_path_factory.mktemp("detector") / "model"))


def test_explain_overlay_of_a_detector_shows_its_marks(detector, tmp_path):
    from lungcad.explain.files import write_heatmap
    from lungcad.explain.saliency import Explainer
    from lungcad.io import load_image

    image = chest_png(tmp_path / "chest.png", 256, 256)
    with no_lung_model():
        files = write_heatmap(Explainer(detector, "gradcam"), image, tmp_path / "out")
        expected = detector.detect(load_image(image).array)
    assert files.findings == list(expected.findings) and files.findings
    from PIL import Image

    rgb = np.asarray(Image.open(files.overlay).convert("RGB"))
    assert rgb.shape[:2] == (256, 256)
    best = files.findings[0]
    ring = best.radius_px(expected.mm_per_pixel)
    rows, cols = np.nonzero(_marked(rgb))
    near = np.abs(np.hypot(rows - best.y, cols - best.x) - ring) <= 2
    assert near.sum() > 20  # the strongest mark's circle is on the overlay


def test_explain_overlay_of_a_classifier_has_no_marks(tmp_path):
    from lungcad.explain.files import write_heatmap
    from lungcad.explain.saliency import Explainer
    from lungcad import load_model
    from lungcad.model_dir import ModelSpec, save_model_dir
    from lungcad.models import create_model
    from lungcad.preprocess import Preprocessing

    spec = ModelSpec(name="tiny", architecture="ct-cnn", task="jsrt-malignant",
                     classes=["rest", "malignant"], preprocessing=Preprocessing(64, 1, 0.5, 0.25))
    model = load_model(save_model_dir(tmp_path / "m", create_model("ct-cnn", 2), spec))
    image = chest_png(tmp_path / "chest.png", 160, 128)
    files = write_heatmap(Explainer(model, "gradcam"), image, tmp_path / "out")
    assert files.findings is None
