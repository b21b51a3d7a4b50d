"""Synthetic test images for the web server tests (imported by their conftest and tests)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np


def synthetic_image(height: int = 160, width: int = 128, seed: int = 0) -> np.ndarray:
    """A chest-like gray picture: a smooth gradient, two dark 'lungs' and a bright blob."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    image = 0.3 + 0.4 * y
    for cx in (0.3, 0.7):
        image -= 0.25 * np.exp(-(((x - cx) / 0.15) ** 2 + ((y - 0.5) / 0.3) ** 2))
    image += 0.4 * np.exp(-(((x - 0.6) / 0.05) ** 2 + ((y - 0.4) / 0.05) ** 2))
    image += rng.normal(0, 0.02, image.shape)
    return np.clip(image, 0, 1).astype(np.float32)


def encode(array: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.round(array * 255).astype(np.uint8), mode="L").save(buffer, format=fmt)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit gray
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b""))
