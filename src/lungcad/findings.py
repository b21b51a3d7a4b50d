"""Detector output: the marks a nodule detector puts on one image.

A :class:`Finding` is one mark: its centre ``(x, y)`` in the *input image's own* pixel
coordinates (x = column, y = row, 0 at the centre of the first pixel, as the manifest's
``x_512``/``y_512`` are), the radius in millimetres it marks, its score in [0, 1] (higher = more
likely a nodule), and where the model has one, the probability that the nodule is malignant.
``lungcad predict`` writes them to ``findings.csv`` (one row a mark, :data:`FINDINGS_COLUMNS`),
which :mod:`lungcad.evaluation.froc` scores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

FINDINGS_COLUMNS = ("path", "x", "y", "radius_mm", "score", "malignancy", "frame_size", "model")


@dataclass(frozen=True)
class Finding:
    x: float                          # column, input pixels
    y: float                          # row, input pixels
    radius_mm: float
    score: float                      # in [0, 1]
    malignancy: float | None = None   # P(malignant | nodule here), where the model has it

    def to_dict(self) -> dict:
        return asdict(self)

    def radius_px(self, mm_per_pixel: float) -> float:
        return self.radius_mm / mm_per_pixel
