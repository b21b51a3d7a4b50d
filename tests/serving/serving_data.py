"""Synthetic test images for the web server tests (imported by their conftest and tests)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np

from pictures import synthetic_image  # noqa: F401  (shared with tests/detector_testing.py)

# The base URL of test clients: a host name the server accepts by default (it refuses others).
LOCAL = "http://127.0.0.1:8000"




def encode(array: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.round(array * 255).astype(np.uint8), mode="L").save(buffer, format=fmt)
    return buffer.getvalue()


def png_claiming(width: int, height: int, colour_type: int = 0, bit_depth: int = 8) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb's shape);
    colour type 0 is gray, 2 RGB, 6 RGBA."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b""))


def two_lungs(height: int = 200, width: int = 160) -> np.ndarray:
    """A bright picture with two dark upright ellipses, left and right: what a 'dark pixels are
    lung' segmenter (:func:`dark_pixel_segmenter`) outlines as a plausible pair of lungs."""
    y, x = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    image = 0.6 + 0.2 * y
    for cx in (0.3, 0.7):
        image[((x - cx) / 0.13) ** 2 + ((y - 0.5) / 0.3) ** 2 <= 1] = 0.15
    return image.astype(np.float32)


def dark_pixel_segmenter(name: str = "jsrt-lungs"):
    """A LungModel of kind "segmenter" whose network calls every pixel darker than 0.3 lung."""
    import torch

    from lungcad.api import Model
    from lungcad.lung_model import LungModel
    from lungcad.model_dir import ModelSpec
    from lungcad.preprocess import Preprocessing

    class DarkPixels(torch.nn.Module):
        def forward(self, x):
            return 40.0 * (0.3 - (x[:, :1] * 0.25 + 0.5))

    spec = ModelSpec(name=name, architecture="lung-unet", task="jsrt-lungs",
                     classes=["background", "lung"], preprocessing=Preprocessing(64, 1, 0.5, 0.25),
                     threshold=0.5, modality="chest radiograph", version="3")
    return Model(LungModel(spec, DarkPixels()))  # the Python API's model


def serve_in_thread(app, **options):
    """The app under a real uvicorn on a free port of 127.0.0.1, in a background thread: yields
    its base URL once started, stops it when resumed. ``options``: uvicorn's, over those
    ``lungcad serve`` gives it."""
    import socket
    import threading
    import time

    import pytest
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    from lungcad.serving.http_protocol import server_options

    server = uvicorn.Server(uvicorn.Config(app, log_level="warning",
                                           **{**server_options(app.state.settings),
                                              **options}))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start within 30 s")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


PREDICT = "/api/v1/predict"


def post_image(client, data: bytes, name: str = "image.png", params=None, **form):
    """POST one image (and form fields) to /api/v1/predict."""
    return client.post(PREDICT, params=params or {}, data=form,
                       files={"file": (name, data, "application/octet-stream")})


def decoded_png(b64: str):
    """A base64 PNG from an answer, checked to be one, opened with Pillow."""
    import base64

    from PIL import Image

    raw = base64.b64decode(b64)
    assert raw.startswith(b"\x89PNG\r\n\x1a\n")
    return Image.open(io.BytesIO(raw))
