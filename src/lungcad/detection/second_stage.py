"""The second stage of a two-stage detector: a patch classifier looks closely at each candidate.

A two-stage network (``nodule-two-stage-lite0``) is a heatmap network (stage 1) plus a patch
classifier (stage 2). Its marks are made in three steps: the ``candidates`` strongest maxima of
the stage-1 nodule map, at least ``candidate_distance_mm`` apart (inside the dilated lung
mask, as every detector's marks); each candidate's P(nodule) by the patch classifier, averaged
over the eight symmetries of the square (P2); the fused score sqrt(P1 * P2) (a geometric mean:
a candidate needs both stages to agree); then, by fused score, the mark settings' ``peaks``
strongest at least ``min_distance_mm`` apart and scoring at least ``min_score``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from lungcad.errors import LungcadError
from lungcad.findings import Finding


@dataclass(frozen=True)
class SecondStageSettings:
    candidates: int = 30               # stage-1 maxima a radiograph looked at closely
    candidate_distance_mm: float = 10.0

    @classmethod
    def from_mapping(cls, values) -> "SecondStageSettings":
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise LungcadError(f"unknown second-stage setting(s) {unknown}; known: "
                               f"{sorted(known)}")
        settings = cls(**values)
        if settings.candidates < 1 or settings.candidate_distance_mm < 0:
            raise LungcadError(f"second-stage settings out of range: {settings}")
        return settings

    def to_dict(self) -> dict:
        return asdict(self)


def fuse(p1, p2) -> np.ndarray:
    """The fused score of candidates: the geometric mean of the two stages' P(nodule)."""
    return np.sqrt(np.clip(np.asarray(p1, float), 0, 1) * np.clip(np.asarray(p2, float), 0, 1))


def keep_apart(findings: list[Finding], mm_per_pixel: float, min_distance_mm: float,
               peaks: int, min_score: float = 0.0) -> list[Finding]:
    """Strongest first, each at least ``min_distance_mm`` from every one kept, ``peaks`` at
    most, none below ``min_score`` (ties: the earlier one first)."""
    order = sorted(range(len(findings)), key=lambda i: -findings[i].score)
    kept: list[Finding] = []
    for i in order:
        f = findings[i]
        if len(kept) >= peaks or f.score < min_score:
            break
        if all(np.hypot(f.x - k.x, f.y - k.y) * mm_per_pixel >= min_distance_mm for k in kept):
            kept.append(f)
    return kept


def candidate_probabilities(network, prepared: np.ndarray, candidates: list[Finding],
                            image_shape: tuple[int, int], mm_per_pixel: float) -> np.ndarray:
    """Stage 2's P(nodule) of each of the stage-1 ``candidates`` (image pixels of an
    ``image_shape`` image with ``mm_per_pixel``), by ``network.candidate_scores`` on the
    ``prepared`` input (C, S, S)."""
    import torch

    if not candidates:
        return np.zeros(0)
    h, w = image_shape
    size = prepared.shape[-1]
    xy = np.array([[f.x * size / w, f.y * size / h] for f in candidates])
    return np.asarray(network.candidate_scores(
        torch.from_numpy(np.asarray(prepared[0], np.float32)), xy, mm_per_pixel * w / size),
        float)


def rescored(candidates: list[Finding], p2: np.ndarray, mm_per_pixel: float,
             marks) -> list[Finding]:
    """The final marks: the ``candidates`` (scored by stage 1) with their stage-2 ``p2``,
    fused, kept by the mark settings ``marks``."""
    fused = fuse([f.score for f in candidates], p2)
    scored = [replace(f, score=float(s)) for f, s in zip(candidates, fused)]
    return keep_apart(scored, mm_per_pixel, marks.min_distance_mm, marks.peaks, marks.min_score)
