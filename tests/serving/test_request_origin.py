"""Requests from other sites (issue 18 item 3): the server answers only the host names it is
configured for (a DNS-rebinding page reaches it under its own name) and refuses cross-origin
POSTs (a form on another site posting to the local server); curl, with no Origin, still works."""

from __future__ import annotations

import pytest

from serving_data import LOCAL
from test_api import assert_error

PREDICT = "/api/v1/predict"


def post(client, png: bytes, headers: dict):
    return client.post(PREDICT, files={"file": ("x.png", png)}, headers=headers)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "192.168.1.20:8000",
                                  "localhost.evil.example"])
def test_foreign_host_names_are_refused(client, host):
    assert_error(client.get("/api/v1/health", headers={"host": host}), 400,
                 "host name", "--allowed-host")


def test_missing_host_header_is_refused(app):
    import anyio

    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/api/v1/health", "raw_path": b"/",
             "query_string": b"", "headers": [], "scheme": "http", "server": ("127.0.0.1", 80),
             "client": ("127.0.0.1", 1234), "http_version": "1.1", "root_path": ""}
    anyio.run(app, scope, receive, send)
    assert sent[0]["status"] == 400


@pytest.mark.parametrize("host", ["localhost:8000", "127.0.0.1:8000", "[::1]:8000", "LOCALHOST",
                                  "127.0.0.1"])
def test_loopback_names_are_accepted_by_default(client, host):
    assert client.get("/api/v1/health", headers={"host": host}).status_code == 200


def test_allowed_host_setting(binary_model):
    from fastapi.testclient import TestClient

    from lungcad.serving import ServeSettings, create_app

    app = create_app([binary_model], ServeSettings(host="0.0.0.0",
                                                   allowed_hosts=("cad.lab.example",)))
    with TestClient(app, base_url="http://cad.lab.example:8000") as client:
        assert client.get("/api/v1/health").status_code == 200
        assert client.get("/api/v1/health", headers={"host": "localhost"}).status_code == 200
        assert client.get("/api/v1/health", headers={"host": "other.example"}).status_code == 400


def test_cross_origin_post_is_refused(client, png_bytes):
    response = post(client, png_bytes, {"origin": "http://evil.example"})
    assert_error(response, 403, "cross-origin", "http://evil.example")


def test_other_local_port_is_another_origin(client, png_bytes):
    # Another program's page on this machine (same site, other port) must not post here either.
    assert_error(post(client, png_bytes, {"origin": "http://127.0.0.1:3000"}), 403,
                 "cross-origin")
    assert_error(post(client, png_bytes, {"origin": "null"}), 403, "cross-origin")


def test_cross_site_fetch_metadata_is_refused(client, png_bytes):
    for site in ("cross-site", "same-site"):
        assert_error(post(client, png_bytes, {"sec-fetch-site": site}), 403, "cross-origin")


def test_same_origin_and_originless_posts_pass(client, png_bytes):
    assert post(client, png_bytes, {"origin": LOCAL}).status_code == 200
    assert post(client, png_bytes, {"origin": LOCAL, "sec-fetch-site": "same-origin"}
                ).status_code == 200
    assert post(client, png_bytes, {"sec-fetch-site": "none"}).status_code == 200
    assert post(client, png_bytes, {}).status_code == 200  # curl sends no Origin


def test_cross_origin_get_is_answered(client):
    # Reading is not refused (the browser's same-origin policy keeps the answer from the page).
    assert client.get("/api/v1/health", headers={"origin": "http://evil.example"}
                      ).status_code == 200


def test_serve_allowed_host_option(binary_model_dir, monkeypatch):
    import uvicorn

    from lungcad.cli import main

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(app))
    assert main(["serve", str(binary_model_dir), "--threads", "1", "--allowed-host",
                 "cad.lab.example", "--allowed-host", "10.0.0.5", "--max-in-flight", "3",
                 "--upload-timeout", "12.5", "--max-decode-mb", "200"]) == 0
    settings = calls[0].state.settings
    assert settings.allowed_hosts == ("cad.lab.example", "10.0.0.5")
    assert settings.max_in_flight == 3 and settings.body_timeout_s == 12.5
    assert settings.max_decode_bytes == 200 * 1024 * 1024


def test_refusal_reaches_a_real_client_whole(live_server, png_bytes):
    # Under uvicorn: the refused upload is read and dropped before the answer, so the client
    # gets the 403 rather than a connection reset by unread data.
    import httpx

    with httpx.Client(base_url=live_server, timeout=60) as client:
        for _ in range(10):
            response = client.post(PREDICT, files={"file": ("x.png", png_bytes * 20)},
                                   headers={"origin": "http://evil.example"})
            assert response.status_code == 403 and "cross-origin" in response.json()["error"]
        assert client.get("/api/v1/health", headers={"host": "evil.example"}).status_code == 400
