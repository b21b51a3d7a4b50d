"""Nodule candidates on a chest radiograph: where a second stage should look.

Two sources, merged:

- **blobs**: multi-scale bright-blob filters at the nodule sizes (diameters ``min_size_mm`` to
  ``max_size_mm``; a disc of radius r answers most strongly at sigma = r / sqrt(2)). ``log``
  is the scale-normalised Laplacian of Gaussian, ``-sigma^2 (Ixx + Iyy)``; ``dot`` is the
  Hessian "dot" filter (both eigenvalues negative; ``sigma^2 |l_small|^2 / |l_large|``), which
  answers to round blobs and hardly to the ridges of ribs and vessels. With ``normalise_mm``,
  each scale's response is divided by its local root mean square (a Gaussian window of that
  size), so that a blob in a quiet part of the lung counts as much as one among the ribs. No
  training: nothing is fitted, so the blobs of any image are out of sample.
- **map**: the local maxima of a detector's nodule-probability cell map
  (:func:`lungcad.detection.marks.marks_from_cells`).

Candidates are local maxima inside the lung mask dilated by ``lung_margin_mm``, at least
``min_distance_mm`` apart, strongest first; :func:`merge_candidates` interleaves several
ranked sources (1st of each, 2nd of each, ...) and drops a candidate closer than
``min_distance_mm`` to one already taken. Frames of candidates carry the columns of a findings
table (``x``, ``y`` in the image's pixels, ``radius_mm``, ``score``) plus ``source`` and
``rank`` (0 = strongest), so :mod:`lungcad.evaluation.froc` scores them;
:func:`candidate_recall` gives the share of nodules among the first K candidates an image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from lungcad.errors import LungcadError

CANDIDATE_COLUMNS = ("x", "y", "radius_mm", "score", "source", "rank")
METHODS = ("log", "dot")


@dataclass(frozen=True)
class BlobSettings:
    min_size_mm: float = 5.0        # nodule diameters the filter bank covers
    max_size_mm: float = 30.0
    n_scales: int = 8               # log-spaced between them
    method: str = "dot"             # "log" or "dot"
    normalise_mm: float | None = 60.0  # local RMS window (Gaussian sigma, mm); None: off
    min_distance_mm: float = 7.0    # candidates at least this far apart
    lung_margin_mm: float = 20.0    # dilation of the lung mask

    def __post_init__(self):
        if self.method not in METHODS:
            raise LungcadError(f"unknown blob method {self.method!r}; known: {list(METHODS)}")
        if not 0 < self.min_size_mm <= self.max_size_mm or self.n_scales < 1:
            raise LungcadError(f"blob sizes out of range: {self.min_size_mm} to "
                               f"{self.max_size_mm} mm, {self.n_scales} scale(s)")

    def diameters_mm(self) -> np.ndarray:
        return np.geomspace(self.min_size_mm, self.max_size_mm, self.n_scales)


def _hessian(image: np.ndarray, sigma: float):
    from scipy import ndimage

    ixx = ndimage.gaussian_filter(image, sigma, order=(0, 2), mode="reflect")
    iyy = ndimage.gaussian_filter(image, sigma, order=(2, 0), mode="reflect")
    ixy = ndimage.gaussian_filter(image, sigma, order=(1, 1), mode="reflect")
    return ixx, iyy, ixy


def scale_response(image: np.ndarray, sigma: float, method: str) -> np.ndarray:
    """Bright-blob strength of one scale (``sigma`` in pixels), scale-normalised; >= 0 for
    ``dot``, signed for ``log`` (positive for bright blobs)."""
    ixx, iyy, ixy = _hessian(image, sigma)
    if method == "log":
        return -(sigma ** 2) * (ixx + iyy)
    half_trace, root = (ixx + iyy) / 2, np.sqrt(((ixx - iyy) / 2) ** 2 + ixy ** 2)
    large, small = half_trace - root, half_trace + root   # large <= small (most negative first)
    bright = small < 0
    return np.where(bright, (sigma ** 2) * small ** 2 / np.where(bright, -large, 1.0), 0.0)


def wide_smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur of width ``sigma`` pixels, computed on a grid coarser by about sigma / 8
    (block means, blurred, linearly interpolated back): the same to within a few per cent for
    wide blurs, at a tenth of the time."""
    from scipy import ndimage

    factor = max(1, int(sigma // 8))
    if factor == 1:
        return ndimage.gaussian_filter(values, sigma)
    h, w = values.shape
    padded = np.pad(values, ((0, -h % factor), (0, -w % factor)), mode="edge")
    coarse = padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor,
                            factor).mean(axis=(1, 3))
    coarse = ndimage.gaussian_filter(coarse, sigma / factor)
    rows = (np.arange(h) + 0.5) / factor - 0.5
    cols = (np.arange(w) + 0.5) / factor - 0.5
    return ndimage.map_coordinates(coarse, np.meshgrid(rows, cols, indexing="ij"), order=1,
                                   mode="nearest")


def blob_response(image: np.ndarray, mm_per_pixel: float,
                  settings: BlobSettings = BlobSettings()) -> tuple[np.ndarray, np.ndarray]:
    """(strength, diameter_mm) per pixel: the strongest scale's (normalised) response and that
    scale's nodule diameter."""
    from scipy import ndimage

    image = np.asarray(image, np.float32)
    if image.ndim != 2:
        raise LungcadError(f"blob candidates need a 2-D image, not shape {image.shape}")
    best = np.full(image.shape, -np.inf)
    diameter = np.zeros(image.shape)
    for d in settings.diameters_mm():
        sigma = d / 2 / np.sqrt(2) / mm_per_pixel
        r = scale_response(image, sigma, settings.method)
        if settings.normalise_mm:
            rms = np.sqrt(np.maximum(wide_smooth(r ** 2, settings.normalise_mm / mm_per_pixel),
                                     0.0))
            r = r / (rms + 1e-12)
        better = r > best
        best[better], diameter[better] = r[better], d
    return best, diameter


def allowed_pixels(lung_mask: np.ndarray | None, shape: tuple[int, int], mm_per_pixel: float,
                   margin_mm: float) -> np.ndarray:
    """Pixels inside the lung mask dilated by ``margin_mm`` (all pixels without a mask)."""
    if lung_mask is None:
        return np.ones(shape, bool)
    from scipy import ndimage

    mask = np.asarray(lung_mask, bool)
    if mask.shape != tuple(shape):
        raise LungcadError(f"the lung mask's shape {mask.shape} is not the image's {shape}")
    if not mask.any():
        raise LungcadError("the lung mask is empty: no lungs to look for nodules in")
    return ndimage.distance_transform_edt(~mask) <= margin_mm / mm_per_pixel


def peaks(strength: np.ndarray, allowed: np.ndarray, mm_per_pixel: float, min_distance_mm: float,
          limit: int) -> np.ndarray:
    """(row, col) of the strongest local maxima of ``strength`` in ``allowed``, strongest
    first, each at least ``min_distance_mm`` from every stronger one taken; at most ``limit``."""
    from scipy import ndimage

    radius = max(1, int(round(min_distance_mm / mm_per_pixel)))
    values = np.where(allowed, strength, -np.inf)
    local = (values == ndimage.maximum_filter(values, size=2 * radius + 1)) & np.isfinite(values)
    rows, cols = np.nonzero(local)
    order = np.lexsort((cols, rows, -values[rows, cols]))  # ties: top-left first
    rows, cols = rows[order], cols[order]
    taken: list[int] = []
    for i in range(len(rows)):
        if len(taken) >= limit:
            break
        if taken:
            t = np.array(taken)
            if (np.hypot(rows[t] - rows[i], cols[t] - cols[i]) < radius).any():
                continue
        taken.append(i)
    return np.column_stack([rows[taken], cols[taken]]) if taken else np.zeros((0, 2), int)


def blob_candidates(image: np.ndarray, lung_mask: np.ndarray | None, mm_per_pixel: float,
                    limit: int = 100, settings: BlobSettings = BlobSettings()) -> pd.DataFrame:
    """The ``limit`` strongest blob candidates of one image (columns :data:`CANDIDATE_COLUMNS`)."""
    strength, diameter = blob_response(image, mm_per_pixel, settings)
    allowed = allowed_pixels(lung_mask, strength.shape, mm_per_pixel, settings.lung_margin_mm)
    at = peaks(strength, allowed, mm_per_pixel, settings.min_distance_mm, limit)
    r, c = at[:, 0], at[:, 1]
    return _frame(c.astype(float), r.astype(float), diameter[r, c] / 2, strength[r, c], "blob")


def map_candidates(nodule_map: np.ndarray, lung_mask: np.ndarray | None,
                   image_shape: tuple[int, int], mm_per_pixel: float, limit: int = 100,
                   min_distance_mm: float = 10.0, lung_margin_mm: float = 20.0) -> pd.DataFrame:
    """The ``limit`` strongest maxima of a detector's nodule map (cells, P(nodule)), as the
    detector's own marks are made (:mod:`lungcad.detection.marks`), at most ``limit``."""
    from lungcad.detection.marks import MarkSettings, allowed_cells, marks_from_cells

    settings = MarkSettings(peaks=limit, min_distance_mm=min_distance_mm,
                            lung_margin_mm=lung_margin_mm)
    allowed = allowed_cells(lung_mask, nodule_map.shape, mm_per_pixel, lung_margin_mm)
    marks = marks_from_cells(nodule_map, None, allowed, image_shape, mm_per_pixel, settings)
    return _frame(np.array([m.x for m in marks]), np.array([m.y for m in marks]),
                  np.array([m.radius_mm for m in marks]), np.array([m.score for m in marks]),
                  "map")


def _frame(x, y, radius_mm, score, source: str) -> pd.DataFrame:
    n = len(x)
    return pd.DataFrame({"x": np.asarray(x, float), "y": np.asarray(y, float),
                         "radius_mm": np.asarray(radius_mm, float),
                         "score": np.asarray(score, float), "source": [source] * n,
                         "rank": np.arange(n)})


def merge_candidates(sources: Sequence[pd.DataFrame], mm_per_pixel: float, limit: int = 100,
                     min_distance_mm: float = 7.0) -> pd.DataFrame:
    """One ranked list from several (each strongest first): round robin over the sources,
    skipping a candidate within ``min_distance_mm`` of one already taken; ``rank`` renumbered,
    ``score`` = 1 - rank / limit (so that the FROC reads the merged order)."""
    queues = [s.sort_values("rank").reset_index(drop=True) for s in sources if len(s)]
    taken: list[pd.Series] = []
    xy = np.zeros((0, 2))
    depth = max((len(q) for q in queues), default=0)
    for i in range(depth):
        for q in queues:
            if len(taken) >= limit:
                break
            if i >= len(q):
                continue
            row = q.iloc[i]
            if len(xy) and (np.hypot(*(xy - [row["x"], row["y"]]).T) * mm_per_pixel
                            < min_distance_mm).any():
                continue
            taken.append(row)
            xy = np.vstack([xy, [row["x"], row["y"]]])
    out = pd.DataFrame(taken, columns=list(CANDIDATE_COLUMNS)).reset_index(drop=True)
    out["rank"] = np.arange(len(out))
    out["score"] = 1.0 - out["rank"] / max(limit, 1)
    return out


def candidate_recall(candidates: pd.DataFrame, truth, ks: Sequence[int] = (10, 20, 50, 100),
                     margin_mm: float = 5.0) -> pd.DataFrame:
    """Share of ``truth``'s nodules (a :class:`lungcad.evaluation.froc.Truth`) hit, by the FROC
    hit rule, by one of the first K candidates of their image, for each K; ``candidates`` has
    ``path``, ``x``, ``y`` (512 px JSRT frame unless ``frame_size``), ``rank``. Rows: ``all``
    and each subtlety; columns: ``n`` and ``K``. Also ``mean_per_image`` at each K."""
    from lungcad.evaluation.froc import match, validate_findings

    frame = candidates.copy()
    frame["score"] = -frame["rank"].astype(float)
    events_rank = np.full(len(truth.nodules), np.inf)
    if len(frame):
        events = match(validate_findings(frame, "candidates"), truth, margin_mm)
        hit = events.mark_nodule >= 0
        np.minimum.at(events_rank, events.mark_nodule[hit], frame["rank"].to_numpy(float)[hit])
    subtlety = truth.nodules["subtlety"].to_numpy(float)
    groups = [("all", np.ones(len(subtlety), bool))] + [
        (f"subtlety {int(s)}", subtlety == s) for s in sorted(set(subtlety[np.isfinite(subtlety)]))]
    rows = []
    for name, sel in groups:
        row = {"nodules": name, "n": int(sel.sum())}
        for k in ks:
            row[f"top {k}"] = float((events_rank[sel] < k).mean()) if sel.any() else np.nan
        rows.append(row)
    per_image = frame.groupby("path")["rank"].count() if len(frame) else pd.Series(dtype=float)
    rows.append({"nodules": "candidates per image (mean)", "n": len(truth.images),
                 **{f"top {k}": float(np.minimum(per_image.reindex(truth.images).fillna(0), k)
                                      .mean()) for k in ks}})
    return pd.DataFrame(rows)
