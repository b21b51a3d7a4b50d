"""Limits that keep small uploads from costing huge memory or blocking everyone (issue 18 item 2):
a decode budget in bytes read from the header, lungcad's pixel limit answering before Pillow's, a
bound on requests in flight per model (503 + Retry-After beyond it) and a timeout on uploads
that stall part-way (408)."""

from __future__ import annotations

import socket
import threading

import httpx
import pytest

from serving_data import LOCAL, png_claiming, serve_in_thread
from test_api import assert_error, post_image

MB = 1024 * 1024


def local_client(app):
    from fastapi.testclient import TestClient

    return TestClient(app, base_url=LOCAL)


# --- decode budget and pixel limit --------------------------------------------------------------

def test_rgba_image_under_the_pixel_limit_but_over_the_decode_budget(client):
    # 36 M pixels (under the 40 M limit) of 8-bit RGBA: 144,000,000 bytes once decoded, from a
    # few hundred bytes sent. Refused from the header, before a pixel is decoded.
    bomb = png_claiming(6000, 6000, colour_type=6)
    assert len(bomb) < 1000
    assert_error(post_image(client, bomb, "rgba.png"), 422, "rgba.png",
                 "6000x6000 pixels x 4 channels x 1 byte", "137 MB to decode",
                 "limit of 128 MB")


def test_decode_budget_setting(binary_model):
    from lungcad.serving import ServeSettings, create_app

    with local_client(create_app([binary_model], ServeSettings(max_decode_bytes=MB))) as client:
        gray = png_claiming(1100, 1000)  # 1.1 MB of 8-bit gray
        assert_error(post_image(client, gray, "gray.png"), 422, "gray.png",
                     "1100x1000 pixels x 1 channel x 1 byte", "limit of 1 MB")


def test_lungcad_pixel_limit_answers_before_pillows(client):
    # 400 M pixels: beyond Pillow's own DecompressionBombError threshold (about 179 M), which
    # used to answer first with Pillow's number and wording.
    bomb = png_claiming(20_000, 20_000)
    response = post_image(client, bomb, "huge.png")
    assert_error(response, 422, "huge.png", "claims 400,000,000 pixels",
                 "limit of 40,000,000")
    assert "178956970" not in response.text and "DOS attack" not in response.text


# --- requests in flight per model ---------------------------------------------------------------

class GatedModel:
    """A served model whose predictions wait until the test lets them through."""

    def __init__(self, model) -> None:
        self._model = model
        self.entered = threading.Event()
        self.release = threading.Event()

    def __getattr__(self, name):
        return getattr(self._model, name)

    def predict_proba(self, *args, **kwargs):
        self.entered.set()
        assert self.release.wait(120), "the test never released the prediction"
        return self._model.predict_proba(*args, **kwargs)


@pytest.fixture()
def gated_server(binary_model):
    from lungcad.serving import ServeSettings, create_app

    gated = GatedModel(binary_model)
    app = create_app([gated], ServeSettings(max_in_flight=1))
    server = serve_in_thread(app)
    url = next(server)
    try:
        yield gated, url
    finally:
        gated.release.set()
        next(server, None)


def test_requests_beyond_the_bound_get_503_with_retry_after(gated_server, png_bytes):
    gated, url = gated_server
    predict = f"{url}/api/v1/predict"
    answers = {}

    def first() -> None:
        answers["first"] = httpx.post(predict, files={"file": ("a.png", png_bytes)}, timeout=120)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert gated.entered.wait(60), "the first request never reached the model"
        busy = httpx.post(predict, files={"file": ("b.png", png_bytes)}, timeout=60)
        assert busy.status_code == 503, busy.text
        assert int(busy.headers["retry-after"]) >= 1
        assert set(busy.json()) == {"error"}
        assert "busy" in busy.json()["error"] and "1 request" in busy.json()["error"]
    finally:
        gated.release.set()
        thread.join(120)
    assert answers["first"].status_code == 200, answers["first"].text
    # The slot is free again once the first answer is out.
    again = httpx.post(predict, files={"file": ("c.png", png_bytes)}, timeout=60)
    assert again.status_code == 200, again.text


# --- uploads that stall ---------------------------------------------------------------------------

@pytest.fixture()
def impatient_server(binary_model):
    from lungcad.serving import ServeSettings, create_app

    server = serve_in_thread(create_app([binary_model], ServeSettings(body_timeout_s=0.5)))
    yield next(server)
    next(server, None)


def test_upload_that_stalls_part_way_gets_408(impatient_server):
    port = int(impatient_server.rsplit(":", 1)[1])
    head = (b"POST /api/v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head + b"--b\r\nContent-Disposition: form-data; name=\"file\"; "
                            b"filename=\"x.png\"\r\n\r\n\x89PNG")  # ... and nothing more
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    status_line = answer.split(b"\r\n", 1)[0]
    assert b" 408 " in status_line, answer[:300]
    assert b"connection: close" in answer.lower()


def test_body_timeout_middleware_answers_408_as_json():
    import anyio

    from lungcad.serving.limits import BodyTimeoutMiddleware
    from starlette.exceptions import HTTPException

    async def receive():
        if not parts:
            await anyio.sleep_forever()  # the client stopped sending
        return parts.pop(0)

    async def inner(scope, receive_, send):
        while True:
            await receive_()

    parts = [{"type": "http.request", "body": b"x" * 10, "more_body": True}]
    scope = {"type": "http", "method": "POST", "path": "/api/v1/predict", "headers": []}

    async def main():
        with anyio.fail_after(30):
            await BodyTimeoutMiddleware(inner, timeout_s=0.05)(scope, receive, _ignore)

    with pytest.raises(HTTPException) as caught:
        anyio.run(main)
    assert caught.value.status_code == 408
    assert "0.05 s" in caught.value.detail and "--upload-timeout" in caught.value.detail


async def _ignore(message) -> None:
    pass


# --- request headers that never finish (Slowloris) -------------------------------------------------

@pytest.mark.parametrize("kind", ["h11", "httptools"])
def test_half_sent_request_line_is_closed_while_a_normal_request_is_served(binary_model, png_bytes,
                                                                          kind):
    from lungcad.serving import ServeSettings, create_app
    from lungcad.serving.http_protocol import header_timeout_protocol

    if kind == "httptools":
        pytest.importorskip("httptools", reason="httptools is not installed (uvicorn falls back "
                                                "to h11)")
    timeout = 4.0
    app = create_app([binary_model], ServeSettings(header_timeout_s=timeout))
    server = serve_in_thread(app, http=header_timeout_protocol(timeout, kind))
    url = next(server)
    port = int(url.rsplit(":", 1)[1])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as slow:
            slow.sendall(b"POST /api/v1/pre")  # half a request line, and nothing more
            served = httpx.post(f"{url}/api/v1/predict", files={"file": ("a.png", png_bytes)},
                                timeout=60)
            assert served.status_code == 200, served.text
            slow.setblocking(False)
            with pytest.raises(BlockingIOError):  # still open: nothing received, not closed
                slow.recv(1)
            slow.setblocking(True)
            slow.settimeout(60)  # far beyond the header timeout: closed long before
            assert slow.recv(65536) == b""  # closed by the server, without an answer
    finally:
        next(server, None)


def test_header_timeout_option_reaches_the_settings():
    from lungcad.errors import LungcadError
    from lungcad.serving import ServeSettings

    assert ServeSettings().header_timeout_s == 10.0
    with pytest.raises(LungcadError, match="header_timeout_s"):
        ServeSettings(header_timeout_s=0)


def test_retry_after_counts_the_service_time_and_the_clients_refused_before(binary_model):
    from lungcad.serving.service import ServedModel

    served = ServedModel("m", binary_model, max_in_flight=1)
    served.service_seconds = 2.0  # as measured on the model's threads
    served.in_flight = 1          # full
    assert served.retry_after(("10.0.0.1", 1)) == 1   # the running request is half done
    assert served.retry_after(("10.0.0.2", 2)) == 3   # behind the client told before
    assert served.retry_after(("10.0.0.2", 2)) == 3   # asking again keeps one place
    assert served.retry_after(("10.0.0.3", 3)) == 5
    assert served.retry_after(None) == 7              # counted, but holds no place
    served.service_seconds = 100.0
    assert served.retry_after(None) == 120            # at most two minutes
