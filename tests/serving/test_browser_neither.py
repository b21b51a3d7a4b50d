"""In headless Chromium, the page's Automatic choice on a picture that is neither a chest
radiograph nor a CT slice (issue 23's colour gradient): no model runs, and the card says why."""

from __future__ import annotations

import pytest
from pictures import colour_gradient
from serving_data import serve_in_thread
from test_browser import browser  # noqa: F401  (the Chromium fixture, skipping without it)

pytestmark = [pytest.mark.browser,
              pytest.mark.filterwarnings("ignore::lungcad.io.ImageReadWarning")]


@pytest.fixture(scope="module")
def two_modality_server(radiograph_model, binary_model):
    from lungcad.serving import ServeSettings, create_app

    yield from serve_in_thread(create_app([radiograph_model, binary_model], ServeSettings()))


def test_automatic_mode_sends_the_gradient_to_no_model_and_says_why(browser,  # noqa: F811
                                                                     two_modality_server):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(two_modality_server + "/")
    page.wait_for_selector("#model-picker:not([hidden])")
    assert page.locator("#model-select").input_value() == "auto"
    page.set_input_files("#file-input", files=[{"name": "gradient.png", "mimeType": "image/png",
                                                "buffer": colour_gradient()}])
    card = page.locator(".result.failed")
    expect(card).to_have_count(1, timeout=60_000)
    text = card.inner_text()
    assert "sent to no model" in text and "neither a chest radiograph nor a CT slice" in text
    assert page.locator(".result.done").count() == 0  # no model answered
    expect(page.locator("#status")).to_contain_text(
        "gradient.png: sent to no model: neither a chest radiograph nor a CT slice")
    page.close()
