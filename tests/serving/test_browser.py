"""End to end in a real headless Chromium: the real server under uvicorn on 127.0.0.1, the page
uploads images, shows the verdict, probabilities and heatmap, and the model card as text.

Needs Debian's /usr/bin/chromium (driven by Playwright's Python package; never `playwright
install`). Under CI it must be there; elsewhere the test skips with the reason.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
SCREENSHOT_COPY = Path("/tmp/lungcad-screenshot.png")

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        message = (f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y "
                   "chromium) for the end-to-end browser test")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def test_page_analyses_uploads_end_to_end(browser, live_server, png_bytes, dicom_bytes,
                                          tmp_path):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    expected_failure = "the server responded with a status of 422"  # notes.txt, below
    page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
            if msg.type == "error" and expected_failure not in msg.text else None)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("dialog", lambda dialog: problems.append(f"dialog opened: {dialog.message}"))
    foreign: list[str] = []
    page.on("request", lambda request: None if request.url.startswith((live_server, "data:"))
            else foreign.append(request.url))

    page.goto(live_server + "/")
    assert page.locator(".banner").inner_text().startswith("Research software, not a medical device.")
    # Two models served: the picker shows, with the default selected.
    page.wait_for_selector("#model-picker:not([hidden])")
    assert page.locator("#model-select").input_value() == "test-ct-binary"

    # The file chooser is reachable and opened with the keyboard alone.
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "file-input":
            break
    assert page.evaluate("document.activeElement.id") == "file-input"
    with page.expect_file_chooser(timeout=10_000) as chooser_info:
        page.keyboard.press("Space")  # (Chromium's Enter on a file input is not reliable)
    chooser = chooser_info.value
    assert chooser.is_multiple()

    chooser.set_files([
        {"name": "synthetic-chest.png", "mimeType": "image/png", "buffer": png_bytes},
        {"name": "CT_small.dcm", "mimeType": "application/dicom", "buffer": dicom_bytes},
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not an image\n" * 4},
    ])
    expect(page.locator(".result.done, .result.failed")).to_have_count(3, timeout=60_000)

    done = page.locator(".result.done")
    assert done.count() == 2
    for i in range(2):
        card = done.nth(i)
        assert card.locator(".verdict-label").inner_text() in ("normal", "abnormal")
        assert card.locator(".probs li").count() == 2
        assert card.locator(".threshold-mark").count() == 1
        heatmap = card.locator("img.heatmap")
        heatmap.wait_for(state="visible")
        assert heatmap.evaluate("img => img.complete && img.naturalWidth > 0")
        assert card.locator("img.base").evaluate("img => img.naturalWidth > 0")
    dicom_card = page.locator(".result.done", has_text="CT_small.dcm")
    assert "DICOM · 128×128 px" in dicom_card.locator(".result-meta").inner_text()

    failed = page.locator(".result.failed")
    assert failed.count() == 1
    assert "unrecognised image format" in failed.locator(".error").inner_text()
    assert failed.locator(".result-meta").inner_text() == "not analysed"

    # Heatmap toggle and opacity.
    card = dicom_card
    layer = card.locator("img.heatmap")
    card.locator("input[type=range]").fill("30")
    assert layer.evaluate("img => img.style.opacity") == "0.3"
    card.get_by_label("Show heatmap").uncheck()
    assert layer.is_hidden()
    card.get_by_label("Show heatmap").check()
    assert layer.is_visible()

    # The model card is shown as text: its <script> is words on the page, not an element.
    page.locator("#card-section summary").click()
    model_card = page.locator("#model-card")
    assert model_card.locator("h3").first.inner_text() == "Test CT model"
    assert "<script>alert(\"card\")</script>" in model_card.inner_text()
    assert model_card.locator("script").count() == 0

    # Another model from the picker gives three classes and no threshold line.
    page.select_option("#model-select", "test-ct-3class")
    page.set_input_files("#file-input", files=[
        {"name": "again.png", "mimeType": "image/png", "buffer": png_bytes}])
    expect(page.locator(".result.done")).to_have_count(3, timeout=60_000)
    newest = page.locator(".result").first
    assert newest.locator(".probs li").count() == 3
    assert newest.locator(".threshold-mark").count() == 0

    # Back to the first results for the picture: verdict and heatmap in view.
    page.select_option("#model-select", "test-ct-binary")
    shot = tmp_path / "lungcad-page.png"
    page.screenshot(path=str(shot), full_page=True)
    shutil.copyfile(shot, SCREENSHOT_COPY)
    assert shot.stat().st_size > 10_000

    assert not problems, problems  # no script errors, no CSP violations, no dialogs
    assert not foreign, f"the page fetched from other origins: {foreign}"
    page.close()


def test_api_docs_render_offline(browser, live_server):
    """Swagger UI comes from the server itself (no CDN) and renders the API's schema."""
    page = browser.new_page()
    foreign: list[str] = []
    page.on("request", lambda request: None if request.url.startswith((live_server, "data:"))
            else foreign.append(request.url))
    page.goto(live_server + "/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    assert "lungcad" in page.locator(".swagger-ui .info .title").inner_text()
    assert page.locator(".opblock-summary-path", has_text="/api/v1/predict").count() == 1
    assert not foreign, f"the docs fetched from other origins: {foreign}"
    page.close()


def test_page_outlines_the_lungs_and_the_checkbox_toggles_the_layer(browser, lungs_live_server,
                                                                    dicom_bytes, tmp_path):
    from playwright.sync_api import expect

    from serving_data import encode, two_lungs

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
            if msg.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.goto(lungs_live_server + "/")
    page.wait_for_selector("#model-picker:not([hidden])")
    assert page.locator("#model-select").input_value() == "test-cxr"
    # A radiograph classifier, and the server has a lung model: the option shows, switched on.
    expect(page.locator("#lungs-option")).to_be_visible()
    assert page.locator("#want-lungs").is_checked()
    assert "jsrt-lungs" in page.locator("#lungs-note").inner_text()

    page.set_input_files("#file-input", files=[
        {"name": "two-lungs.png", "mimeType": "image/png", "buffer": encode(two_lungs(), "PNG")}])
    expect(page.locator(".result.done")).to_have_count(1, timeout=60_000)
    card = page.locator(".result.done").first
    assert card.locator(".verdict-label").inner_text() in ("rest", "malignant")
    lungs = card.locator("img.lungs")
    lungs.wait_for(state="visible")
    assert lungs.evaluate("img => img.complete && img.naturalWidth > 0")
    assert card.locator("img.heatmap").is_visible()  # both layers, each with its checkbox
    assert card.locator(".measures li").count() == 2
    assert card.locator(".measures li").first.inner_text().startswith("right lung (image left)")
    card.get_by_label("Show lungs").uncheck()
    assert lungs.is_hidden() and card.locator("img.heatmap").is_visible()
    card.get_by_label("Show lungs").check()
    assert lungs.is_visible()

    # Without the option, a classifier's answer has no lungs layer.
    page.locator("#want-lungs").uncheck()
    page.set_input_files("#file-input", files=[
        {"name": "no-lungs.png", "mimeType": "image/png", "buffer": encode(two_lungs(), "PNG")}])
    expect(page.locator(".result.done")).to_have_count(2, timeout=60_000)
    assert page.locator(".result").first.locator("img.lungs").count() == 0

    # The segmentation model itself: no heatmap, no lungs option; a CT slice gets its warning
    # and its (untrustworthy) outline starts hidden.
    page.select_option("#model-select", "jsrt-lungs")
    assert page.locator("#lungs-option").is_hidden()
    assert page.locator("#want-heatmap").is_disabled()
    page.set_input_files("#file-input", files=[
        {"name": "CT_small.dcm", "mimeType": "application/dicom", "buffer": dicom_bytes}])
    expect(page.locator(".result.done")).to_have_count(3, timeout=60_000)
    newest = page.locator(".result").first
    assert newest.locator(".verdict-label").inner_text() == "no plausible pair of lungs"
    assert "CT" in newest.locator(".notes").inner_text()
    assert newest.locator("img.lungs").is_hidden()
    newest.get_by_label("Show lungs").check()
    assert newest.locator("img.lungs").is_visible()
    assert newest.locator(".measures li").count() == 2

    page.screenshot(path=str(tmp_path / "lungs-page.png"), full_page=True)
    assert not problems, problems
    page.close()
