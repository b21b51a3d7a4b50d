"""The page in Automatic mode, in a real headless Chromium (issue 23): a real chest radiograph
(RG1_UNCI.dcm, out of domain for the JSRT models) gets the lung outline, the model cards of the
models that read it (in the order of the modality's list), the out-of-domain caveat in the
status line, and the detector's marks hidden by default with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving_data import serve_in_thread
from test_browser import browser  # noqa: F401  (the fixture: Debian's chromium or a skip)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def auto_server():
    import lungcad
    from lungcad.serving import ServeSettings, create_app

    models = [lungcad.load_model(n) for n in ("chest-ct-4class", "jsrt-nodules",
                                              "jsrt-malignant", "jsrt-lungs")]
    yield from serve_in_thread(create_app(models, ServeSettings()))


def test_automatic_mode_shows_outline_cards_and_the_out_of_domain_caveat(browser,  # noqa: F811
                                                                         auto_server):
    from playwright.sync_api import expect
    from pydicom.data import get_testdata_file

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.goto(auto_server + "/")
    page.wait_for_selector("#model-picker:not([hidden])")
    assert page.locator("#model-select").input_value() == "auto"
    assert page.locator("#lungs-option").is_visible()         # the outline is offered ...
    assert page.locator("#want-lungs").is_checked()           # ... and on
    card_text = page.locator("#model-card").text_content()
    assert "no model card" not in card_text and "jsrt-nodules" in card_text

    dicom = Path(get_testdata_file("RG1_UNCI.dcm"))
    page.set_input_files("#file-input", str(dicom))
    expect(page.locator(".result.done, .result.failed")).to_have_count(2, timeout=240_000)
    expect(page.locator("#status")).to_contain_text("jsrt-malignant", timeout=60_000)
    titles = page.locator(".result .result-title").all_text_contents()
    assert [t.split("→ ")[-1] for t in titles] == ["jsrt-nodules", "jsrt-malignant"]
    assert page.locator(".result.done").count() == 2
    # the lung outline on both radiograph cards
    assert page.locator(".result .stack img.lungs").count() == 2
    # the model card panel: the cards of the models that read it, not "no model card"
    card_text = page.locator("#model-card").text_content()
    assert "jsrt-nodules" in card_text and "jsrt-malignant" in card_text
    assert "chest-ct-4class" not in card_text and "no model card" not in card_text
    # out of domain: the caveat in the status line, and the marks hidden with the reason
    status = page.locator("#status").text_content()
    assert status.count("OUT OF DOMAIN") == 2, status
    assert page.locator(".ood-badge").count() == 2
    detector = page.locator(".result").nth(0)
    assert not detector.locator("svg.marks").is_visible()
    assert "outside what this model was trained on" in detector.locator(
        ".marks-count").text_content()
    detector.get_by_label("Show marks").check()
    assert detector.locator("svg.marks").is_visible()
    assert not problems, problems
    page.close()
