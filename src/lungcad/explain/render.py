"""Pictures of saliency maps: the grayscale image with the map blended over it, as RGB or PNG."""

from __future__ import annotations

import io

import numpy as np

from lungcad.errors import LungcadError

DEFAULT_COLORMAP = "jet"


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size bitmap font
        return ImageFont.load_default()


def draw_text(rgb: np.ndarray, text: str) -> np.ndarray:
    """``text`` (lines split on newlines) in white on a dark box in the top-left corner, sized to
    stay readable on both a 256 px and a 2048 px image."""
    from PIL import Image, ImageDraw

    picture = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    h, w = rgb.shape[:2]
    font = _font(max(10, round(min(h, w) / 32)))
    draw = ImageDraw.Draw(picture, "RGBA")
    margin = max(2, round(min(h, w) / 100))
    left, top, right, bottom = draw.multiline_textbbox((margin, margin), text, font=font)
    draw.rectangle((left - margin // 2, top - margin // 2, right + margin // 2,
                    bottom + margin // 2), fill=(0, 0, 0, 170))
    draw.multiline_text((margin, margin), text, fill=(255, 255, 255, 255), font=font)
    return np.asarray(picture, dtype=np.uint8).copy()


def overlay(image: np.ndarray, heatmap: np.ndarray, text: str | None = None, alpha: float = 0.4,
            colormap: str = DEFAULT_COLORMAP) -> np.ndarray:
    """(H, W, 3) uint8 RGB: the grayscale ``image`` ([0, 1]) with ``heatmap`` ([0, 1], same
    shape) through ``colormap`` blended in at opacity ``alpha``, and ``text`` written on it."""
    from matplotlib import colormaps

    image = np.asarray(image, dtype=np.float32)
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if image.ndim != 2 or heatmap.shape != image.shape:
        raise LungcadError(f"overlay needs a 2-D image and a heatmap of the same shape; got "
                           f"{image.shape} and {heatmap.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise LungcadError(f"overlay alpha must lie in [0, 1], got {alpha}")
    gray = np.clip(np.nan_to_num(image), 0.0, 1.0)[..., None]
    colour = colormaps[colormap](np.clip(np.nan_to_num(heatmap), 0.0, 1.0))[..., :3]
    blended = (1.0 - alpha) * gray + alpha * colour
    rgb = np.round(np.clip(blended, 0.0, 1.0) * 255).astype(np.uint8)
    return draw_text(rgb, text) if text else rgb


def mark_circle(rgb: np.ndarray, cx: float, cy: float, radius: float,
                colour: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """A ring at (cx, cy) (column, row, in pixels) on a copy of ``rgb``: a nodule's extent."""
    from PIL import Image, ImageDraw

    picture = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    width = max(1, round(min(rgb.shape[:2]) / 256))
    ImageDraw.Draw(picture).ellipse((cx - radius, cy - radius, cx + radius, cy + radius),
                                    outline=colour, width=width)
    return np.asarray(picture, dtype=np.uint8).copy()


def mark_cross(rgb: np.ndarray, x: float, y: float, colour: tuple[int, int, int] = (255, 0, 255),
               arm: float | None = None) -> np.ndarray:
    """A plus sign at (x, y) on a copy of ``rgb``: a saliency peak."""
    from PIL import Image, ImageDraw

    picture = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    arm = arm or max(3.0, min(rgb.shape[:2]) / 60)
    width = max(1, round(min(rgb.shape[:2]) / 256))
    draw = ImageDraw.Draw(picture)
    draw.line((x - arm, y, x + arm, y), fill=colour, width=width)
    draw.line((x, y - arm, x, y + arm), fill=colour, width=width)
    return np.asarray(picture, dtype=np.uint8).copy()


def png_bytes(rgb: np.ndarray) -> bytes:
    """PNG file bytes of an (H, W, 3) uint8 RGB array (or an (H, W) uint8 gray one)."""
    from PIL import Image

    array = np.asarray(rgb)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3
                                                               and array.shape[2] != 3):
        raise LungcadError(f"png_bytes needs (H, W, 3) or (H, W) uint8, got {array.dtype} "
                           f"{array.shape}")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG")
    return buffer.getvalue()
