"""``lungcad demo`` with a nodule detector: its marks (circles with scores) on the radiograph's
figure and in the page; the default choice of models where the bundled detector exists."""

from __future__ import annotations

import numpy as np
import pytest

from detector_testing import DETECTOR_NAME, no_lung_model, save_detector_dir


def test_demo_draws_a_detectors_marks(tmp_path):
    from PIL import Image

    from lungcad.demo import run_demo
    from lungcad.explain.marks import MARK_COLOUR

    model_dir = save_detector_dir(tmp_path / "detector")
    lines: list[str] = []
    with no_lung_model():
        page = run_demo(tmp_path / "demo", [str(model_dir)], log=lines.append)
    text = page.read_text()
    assert "nodule marks" in text and "Grad-CAM heatmap and nodule marks" in text
    assert text.count("mark 0.") >= 1  # one line per mark, with its score
    assert "not installed" in text  # the detector's warning (no lung model here) is shown
    assert any("RG1_UNCI.dcm" in line and "nodule mark(s)" in line for line in lines)
    assert not any("CT_small" in line for line in lines)  # a radiograph model
    figures = tmp_path / "demo" / "figures"
    overlay = np.asarray(Image.open(figures / f"RG1_UNCI-{DETECTOR_NAME}_overlay.png")
                         .convert("RGB"))
    image = np.asarray(Image.open(figures / f"RG1_UNCI-{DETECTOR_NAME}_image.png").convert("RGB"))
    yellow = np.all(overlay == np.array(MARK_COLOUR, np.uint8), axis=-1)
    assert yellow.sum() > 50  # circles drawn on the overlay figure
    assert not np.all(image == np.array(MARK_COLOUR, np.uint8), axis=-1).any()  # not the image


def test_classifier_demo_has_no_marks(tmp_path):
    from lungcad.demo import render_page, DemoResult

    result = DemoResult("a.dcm", "sample", "m", "rest", {"rest": 0.9}, 0.5,
                        tmp_path / "i.png", tmp_path / "o.png", None)
    for path in (result.image, result.overlay):
        path.write_bytes(b"")
    assert "nodule marks" not in render_page([result])


@pytest.mark.parametrize("bundled, replaced, expected", [
    (["jsrt-lungs", "jsrt-malignant"], ("jsrt-malignant",), ["jsrt-lungs", "jsrt-malignant"]),
    (["jsrt-malignant", "jsrt-nodules"], (), ["jsrt-malignant", "jsrt-nodules"]),
    (["jsrt-malignant", "jsrt-nodules"], ("jsrt-malignant",), ["jsrt-nodules"]),
])
def test_the_detector_is_picked_up_when_bundled(monkeypatch, bundled, replaced, expected):
    import lungcad.demo as demo

    monkeypatch.setattr(demo, "REPLACED_BY_DETECTOR", replaced)
    assert demo.DETECTOR == "jsrt-nodules"
    assert demo.demo_models(bundled) == expected


def test_demo_says_when_the_lung_outline_is_out_of_domain(tmp_path):
    """The bundled jsrt-lungs on the modern radiograph RG1_UNCI.dcm (unlike JSRT's films): the
    demo's line and page carry the same out-of-domain note as `lungcad segment`."""
    from lungcad.demo import run_demo

    lines: list[str] = []
    page = run_demo(tmp_path / "demo", ["jsrt-lungs"], log=lines.append)
    rg1 = [line for line in lines if line.startswith("RG1_UNCI.dcm")]
    assert len(rg1) == 1 and "lungs outlined" in rg1[0]
    assert "OUT OF DOMAIN" in rg1[0] and "do not read this mask" in rg1[0]
    assert "do not read this mask" in page.read_text()
