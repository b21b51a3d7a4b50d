"""Synthetic pictures shared by test folders (tests/ is on the import path of every test)."""

from __future__ import annotations

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


def colour_gradient(width: int = 800, height: int = 600) -> bytes:
    """An 800 x 600 RGB colour gradient as PNG bytes: neither a chest radiograph nor a CT slice
    (issue 23 saw it routed as a radiograph)."""
    import io

    from PIL import Image

    x = np.linspace(0, 255, width)[None, :]
    y = np.linspace(0, 255, height)[:, None]
    rgb = np.stack(np.broadcast_arrays(x + 0 * y, y + 0 * x, 255 - x + 0 * y), axis=-1)
    buffer = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()
