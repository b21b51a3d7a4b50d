"""From a nodule-probability cell map to marks: greedy local maxima inside the lungs.

The strongest cell inside the allowed region becomes a mark; cells closer than
``min_distance_mm`` to it are suppressed; repeat until ``peaks`` marks or no cell is left. The
allowed region is the lung mask dilated by ``lung_margin_mm`` (nodules behind the heart or the
diaphragm lie just outside the lung fields that masks draw); without a lung mask every cell is
allowed. A mark's radius is that of the disc with the area of the connected cells, around the
peak, whose probability is at least half the peak's (clamped to ``radius_range_mm``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from lungcad.errors import LungcadError
from lungcad.findings import Finding


@dataclass(frozen=True)
class MarkSettings:
    peaks: int = 10                  # marks per image at most
    min_distance_mm: float = 20.0    # marks at least this far apart
    lung_margin_mm: float = 20.0     # dilation of the lung mask
    min_score: float = 0.0           # marks below this score are dropped
    radius_range_mm: tuple[float, float] = (3.0, 30.0)

    @classmethod
    def from_mapping(cls, values: dict | None) -> "MarkSettings":
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise LungcadError(f"unknown mark setting(s) {unknown}; known: {sorted(known)}")
        if "radius_range_mm" in values:
            values["radius_range_mm"] = tuple(float(v) for v in values["radius_range_mm"])
        settings = cls(**values)
        if settings.peaks < 1 or settings.min_distance_mm < 0 or settings.lung_margin_mm < 0:
            raise LungcadError(f"mark settings out of range: {settings}")
        return settings

    def to_dict(self) -> dict:
        out = asdict(self)
        out["radius_range_mm"] = list(self.radius_range_mm)
        return out


_DILATION_SIDE = 512  # larger masks are max-pooled to about this side before the dilation


def allowed_cells(lung_mask: np.ndarray | None, grid: tuple[int, int], mm_per_pixel: float,
                  margin_mm: float) -> np.ndarray:
    """Cells (bool ``grid``) whose centre lies in the lung mask dilated by ``margin_mm``. A mask
    larger than ``_DILATION_SIDE`` is max-pooled by a whole factor first (a 2,000 px radiograph's
    dilation then takes milliseconds, not 0.2 s), which errs outwards only, by less than
    2 * sqrt(2) * factor pixels; a JSRT mask (512 px) is dilated as it is."""
    if lung_mask is None:
        return np.ones(grid, bool)
    from scipy import ndimage

    mask = np.asarray(lung_mask, bool)
    height, width = mask.shape
    # cell centres in the mask's own pixels
    rows = np.minimum(((np.arange(grid[0]) + 0.5) * height / grid[0]).astype(int), height - 1)
    cols = np.minimum(((np.arange(grid[1]) + 0.5) * width / grid[1]).astype(int), width - 1)
    steps = int(round(margin_mm / mm_per_pixel))
    factor = -(-max(height, width) // _DILATION_SIDE)
    if factor > 1:
        pooled = np.zeros((-(-height // factor) * factor, -(-width // factor) * factor), bool)
        pooled[:height, :width] = mask
        mask = pooled.reshape(pooled.shape[0] // factor, factor,
                              pooled.shape[1] // factor, factor).any(axis=(1, 3))
        rows, cols = rows // factor, cols // factor
        # pooling moves a pixel by less than one pooled pixel on each axis: widen by sqrt(2)
        # pooled pixels so that no cell the full-resolution dilation allows is lost
        return (ndimage.distance_transform_edt(~mask) <= steps / factor + np.sqrt(2))[
            np.ix_(rows, cols)]
    if steps > 0:
        # a disc-shaped dilation by distance (one pass, whatever the margin)
        mask = ndimage.distance_transform_edt(~mask) <= steps
    return mask[np.ix_(rows, cols)]


def _radius_cells(probability: np.ndarray, r: int, c: int) -> float:
    from scipy import ndimage

    labels, _ = ndimage.label(probability >= probability[r, c] / 2)
    area = float((labels == labels[r, c]).sum())
    return float(np.sqrt(area / np.pi))


def marks_from_cells(nodule: np.ndarray, malignant: np.ndarray | None, allowed: np.ndarray,
                     image_shape: tuple[int, int], mm_per_pixel: float,
                     settings: MarkSettings = MarkSettings()) -> list[Finding]:
    """Marks for one image from its cell maps (G_r, G_c) of P(nodule) and P(malignant | nodule),
    in the image's own pixel coordinates (``image_shape`` (rows, columns); cell (i, j) covers
    the image's rows i*H/G_r to (i+1)*H/G_r), strongest first."""
    nodule = np.asarray(nodule, np.float64)
    grid = nodule.shape
    cell_h, cell_w = image_shape[0] / grid[0], image_shape[1] / grid[1]
    rows, cols = np.indices(grid)
    ys, xs = (rows + 0.5) * cell_h - 0.5, (cols + 0.5) * cell_w - 0.5
    values = np.where(allowed, nodule, -np.inf)
    cell_mm = np.sqrt(cell_h * cell_w) * mm_per_pixel
    low, high = settings.radius_range_mm
    found: list[Finding] = []
    while len(found) < settings.peaks and np.isfinite(values).any():
        r, c = np.unravel_index(int(np.argmax(values)), grid)
        score = float(nodule[r, c])
        if score < settings.min_score:
            break
        radius = float(np.clip(_radius_cells(nodule, r, c) * cell_mm, low, high))
        found.append(Finding(x=float(xs[r, c]), y=float(ys[r, c]), radius_mm=radius,
                             score=score,
                             malignancy=None if malignant is None else float(malignant[r, c])))
        near = np.hypot((ys - ys[r, c]) * mm_per_pixel, (xs - xs[r, c]) * mm_per_pixel)
        values[near < settings.min_distance_mm] = -np.inf
    return found
