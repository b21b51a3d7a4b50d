"""In a real headless Chromium: a served nodule detector's marks are drawn as circles over the
uploaded image, a toggle hides them, and the minimum-score slider at 1.0 hides every one."""

from __future__ import annotations

import pytest

from detector_testing import no_lung_model, save_detector_dir
from serving_data import encode, serve_in_thread, synthetic_image
from test_browser import browser  # noqa: F401  (the Chromium fixture)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def detector_server(tmp_path_factory):
    from lungcad import load_model
    from lungcad.serving import ServeSettings, create_app

    model = load_model(save_detector_dir(tmp_path_factory.mktemp("detector") / "model"))
    with no_lung_model():
        yield from serve_in_thread(create_app([model], ServeSettings()))


def test_page_draws_detector_marks(browser, detector_server):  # noqa: F811
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.goto(detector_server + "/")
    expect(page.locator("#model-summary")).to_contain_text("test-nodules")
    expect(page.locator("#model-summary")).to_contain_text("marks nodules")
    page.uncheck("#want-heatmap")  # marks only: faster
    page.set_input_files("#file-input", files=[
        {"name": "chest.png", "mimeType": "image/png",
         "buffer": encode(synthetic_image(300, 240), "PNG")}])
    card = page.locator(".result.done")
    expect(card).to_have_count(1, timeout=60_000)

    svg = card.locator("svg.marks")
    circles = svg.locator("circle")
    total = circles.count()
    assert total > 0
    assert svg.locator("text").count() == total  # a score beside every circle
    assert svg.get_attribute("viewBox") == "0 0 240 300"  # the image's own pixel frame
    expect(card.locator(".marks-count")).to_have_text(f"{total} of {total} marks shown"
                                                      if total > 1 else "1 of 1 mark shown")
    assert circles.first.is_visible()
    # the SVG covers the shown image exactly: marks scale with the display size
    base = card.locator("img.base").bounding_box()
    box = svg.bounding_box()
    assert abs(base["width"] - box["width"]) < 1 and abs(base["height"] - box["height"]) < 1
    # the strongest mark sits where its image coordinates say, scaled to the display
    body_x = float(circles.first.get_attribute("cx"))
    shown = circles.first.bounding_box()
    assert abs(box["x"] + body_x * box["width"] / 240 - (shown["x"] + shown["width"] / 2)) < 2

    card.get_by_label("Show marks").uncheck()
    assert svg.is_hidden()
    expect(card.locator(".marks-count")).to_contain_text("marks hidden")
    card.get_by_label("Show marks").check()
    assert svg.is_visible()

    slider = card.get_by_label("Minimum score")
    scores = sorted(float(s) for s in svg.locator("g.mark").evaluate_all(
        "gs => gs.map(g => g.dataset.score)"))
    middle = scores[len(scores) // 2]
    slider.fill(f"{middle:.2f}")
    expected = sum(s >= round(middle, 2) for s in scores)
    assert sum(g.is_visible() for g in svg.locator("g.mark").all()) == expected
    slider.fill("1")
    assert all(not c.is_visible() for c in circles.all())
    expect(card.locator(".marks-count")).to_have_text(f"0 of {total} marks shown"
                                                      if total > 1 else "0 of 1 mark shown")
    assert "Nodule marks" in card.locator(".marks-notes").inner_text()
    assert problems == []
    page.close()
