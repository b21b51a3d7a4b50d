"""A nodule detector's marks drawn on a picture: one circle per mark, its score beside it.

Used by ``lungcad explain`` (on the overlay of a detector) and ``lungcad demo`` (the
radiograph's figures). Marks (:class:`lungcad.findings.Finding`) are in the input image's own
pixel coordinates; ``scale`` maps them onto a picture of another size (display pictures).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from lungcad.explain.render import _font

MARK_COLOUR = (255, 220, 0)   # yellow: apart from the heat's colours and the lungs' cyan/orange
MIN_RADIUS_PX = 4.0           # a circle stays visible on a small picture


def mark_radius_px(finding, mm_per_pixel: float, scale: float = 1.0) -> float:
    """The circle's radius in the picture's pixels."""
    return max(MIN_RADIUS_PX, float(finding.radius_px(mm_per_pixel)) * scale)


def draw_marks(rgb: np.ndarray, findings: Sequence, mm_per_pixel: float, scale: float = 1.0,
               min_score: float = 0.0,
               colour: tuple[int, int, int] = MARK_COLOUR) -> np.ndarray:
    """A copy of ``rgb`` (H, W, 3 uint8) with a circle and the score (two decimals) of every
    mark whose score is at least ``min_score``; ``scale``: picture pixels per image pixel."""
    from PIL import Image, ImageDraw

    picture = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    h, w = rgb.shape[:2]
    width = max(2, round(min(h, w) / 200))
    font = _font(max(10, round(min(h, w) / 36)))
    draw = ImageDraw.Draw(picture, "RGBA")
    for finding in findings:
        if finding.score < min_score:
            continue
        cx, cy = (finding.x + 0.5) * scale - 0.5, (finding.y + 0.5) * scale - 0.5
        r = mark_radius_px(finding, mm_per_pixel, scale)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=(*colour, 255), width=width)
        label = f"{finding.score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        tx = min(max(0.0, cx + r * 0.75), w - (right - left) - 1)
        ty = min(max(0.0, cy - r * 0.75 - (bottom - top) - 2), h - (bottom - top) - 1)
        draw.rectangle((tx - 1, ty + top - 1, tx + right - left + 1, ty + bottom + 1),
                       fill=(0, 0, 0, 150))
        draw.text((tx - left, ty), label, fill=(*colour, 255), font=font)
    return np.asarray(picture, dtype=np.uint8).copy()


def marks_text(findings: Sequence, model_name: str) -> str:
    """One line for a picture's caption: how many marks, and the strongest score."""
    if not findings:
        return f"{model_name}: no nodule marks"
    best = max(f.score for f in findings)
    plural = "s" if len(findings) != 1 else ""
    return f"{model_name}: {len(findings)} mark{plural} (circles), best score {best:.2f}"
