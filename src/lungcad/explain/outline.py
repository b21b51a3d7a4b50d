"""Pictures of a lung segmentation (:class:`~lungcad.segmentation.predict.LungSegmentation`).

- :func:`outline_overlay`: the grayscale image with each lung's outline drawn on it (the
  patient's right lung in cyan, the left in orange) and text written in the top-left corner;
- :func:`outline_layer_png`: the outline alone on a transparent background, shrunk for display
  (the web page lays it over the image);
- :func:`mask_png`: the mask itself, 0 (background) / 255 (lung), at its own size;
- :func:`side_lines` / :func:`summary_text`: each side's area and height in words.

Sides are the patient's, as :func:`lungcad.segmentation.masks.side_masks` assigns them: on a
frontal (PA) view the patient's right lung is on the image's left.
"""

from __future__ import annotations

import io

import numpy as np

from lungcad.disclaimer import SHORT_DISCLAIMER
from lungcad.explain.render import draw_text

SIDE_COLOURS = {"right": (0, 220, 255), "left": (255, 150, 0)}  # cyan, orange
SIDE_PLACES = {"right": "image left", "left": "image right"}
NOT_LUNGS_SHORT = "NO PLAUSIBLE PAIR OF LUNGS: do not trust this outline"
READABLE_SIDE = 512  # overlays of smaller images are enlarged to this, so their text is legible


def line_width(shape: tuple[int, ...]) -> int:
    """Outline thickness in pixels: about 1/200 of the shorter side, at least 1."""
    return max(1, round(min(shape[:2]) / 200))


def outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """The pixels of ``mask`` within ``width`` pixels of its edge (8-connected erosion)."""
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return mask.copy()
    inner = ndimage.binary_erosion(mask, structure=np.ones((3, 3), bool), iterations=width,
                                   border_value=0)
    return mask & ~inner


def shrink_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``mask`` at ``shape`` (area averaging, then majority), for display."""
    from lungcad.preprocess import resize_area

    mask = np.asarray(mask, dtype=bool)
    if mask.shape == tuple(shape):
        return mask
    return resize_area(mask.astype(np.float32), tuple(shape)) >= 0.5


def draw_outline(rgb: np.ndarray, mask: np.ndarray, width: int | None = None) -> np.ndarray:
    """A copy of ``rgb`` (H, W, 3 uint8) with each side's outline in its colour."""
    from lungcad.segmentation.masks import side_masks

    out = np.array(rgb, dtype=np.uint8, copy=True)
    width = width or line_width(out.shape)
    for side, region in side_masks(np.asarray(mask, dtype=bool)).items():
        out[outline(region, width)] = SIDE_COLOURS[side]
    return out


def gray_rgb(image: np.ndarray) -> np.ndarray:
    """A [0, 1] 2-D image as (H, W, 3) uint8."""
    gray = np.round(np.clip(np.nan_to_num(np.asarray(image, np.float32)), 0, 1) * 255)
    return np.repeat(gray.astype(np.uint8)[..., None], 3, axis=2)


def outline_overlay(image: np.ndarray, mask: np.ndarray, text: str | None = None,
                    min_side: int = 0) -> np.ndarray:
    """(H, W, 3) uint8: the grayscale ``image`` with the lung outline and ``text`` on it; an
    image whose longer side is under ``min_side`` is enlarged by a whole factor first."""
    from lungcad.preprocess import resize_area

    image, mask = np.asarray(image, np.float32), np.asarray(mask, dtype=bool)
    if max(image.shape) < min_side:
        factor = -(-min_side // max(image.shape))
        image = resize_area(image, (image.shape[0] * factor, image.shape[1] * factor))
        mask = np.kron(mask, np.ones((factor, factor), bool))
    rgb = draw_outline(gray_rgb(image), mask)
    return draw_text(rgb, text) if text else rgb


def outline_layer_png(mask: np.ndarray, display_side: int | None = None) -> bytes:
    """The outline alone as an RGBA PNG, transparent elsewhere; shrunk so that its longer side
    is at most ``display_side`` pixels (the size of the page's image)."""
    from PIL import Image

    mask = np.asarray(mask, dtype=bool)
    if display_side is not None and max(mask.shape) > display_side:
        scale = display_side / max(mask.shape)
        mask = shrink_mask(mask, (max(1, round(mask.shape[0] * scale)),
                                  max(1, round(mask.shape[1] * scale))))
    rgb = draw_outline(np.zeros((*mask.shape, 3), np.uint8), mask)
    alpha = np.where(rgb.any(axis=2), 255, 0).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA").save(buffer, format="PNG")
    return buffer.getvalue()


def mask_png(mask: np.ndarray) -> bytes:
    """The mask as an 8-bit gray PNG: 255 = lung, 0 = background."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.where(np.asarray(mask, dtype=bool), 255, 0).astype(np.uint8),
                    mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def side_lines(measures: dict) -> list[str]:
    """One line per side, e.g. ``right lung (image left): 152.3 cm², 24.1 cm high``: in cm where
    the pixel spacing is known, in pixels otherwise."""
    lines = []
    for side in ("right", "left"):
        if f"{side}_area_mm2" in measures:
            size = (f"{measures[f'{side}_area_mm2'] / 100:.1f} cm\u00b2, "
                    f"{measures[f'{side}_height_mm'] / 10:.1f} cm high")
        else:
            size = (f"{measures[f'{side}_area_px']:,} px, "
                    f"{measures[f'{side}_height_px']:,} px high")
        lines.append(f"{side} lung ({SIDE_PLACES[side]}): {size}")
    return lines


def summary_text(segmentation, model_name: str) -> str:
    """What an outline overlay says: the model, each side's measures, a warning where the mask
    is not a plausible pair of lungs, and the disclaimer."""
    head = f"lungs: {model_name}" + ("" if segmentation.plausible else f"\n{NOT_LUNGS_SHORT}")
    sides = [line.replace("\u00b2", "^2")  # the image font has no superscript two
             for line in side_lines(segmentation.measures)]
    return "\n".join([head, *sides, SHORT_DISCLAIMER])
