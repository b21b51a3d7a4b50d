"""Cell targets for a detector from a dataset's lesion table: any number of lesions an image,
each image at its own size and pixel spacing.

The image is resized to ``image_size`` x ``image_size`` (as the detector's preprocessing does),
so a lesion at (x, y) of a W x H image lands at (x * S / W, y * S / H) and its radius in mm
becomes an ellipse of ``r / col_mm * S / W`` by ``r / row_mm * S / H`` cells' pixels. A cell is a
lesion cell when its centre lies inside a box lesion (resized), or inside a lesion's disc
(radius at least ``min_radius_mm``; a box also gets that smallest disc at its centre), and the
cell holding a lesion's centre always is. ``malignant`` is 1 on the lesion cells of an image
labelled malignant (or of a lesion whose ``malignant`` column is 1).

Lesions derived from JSRT columns (no lesions.csv) keep the JSRT rule of
:func:`cell_targets`, bit for bit.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from lungcad.errors import LungcadError
from lungcad.jsrt_geometry import JSRT_PIXEL_MM_AT_512

REQUIRED_COLUMNS = ("label", "x_512", "y_512", "size_mm")


def cell_targets(rows: pd.DataFrame, grid: int, image_size: int, stride: int = 16,
                 min_radius_mm: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(nodule, malignant) cell maps (N, grid, grid) float32 for the manifest ``rows``.

    A cell is a nodule cell when its centre lies inside the nodule's disc (radius ``size_mm / 2``,
    at least ``min_radius_mm``), and the cell holding the nodule's centre always is.
    ``malignant`` holds the nodule's malignancy on those cells.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in rows.columns]
    if missing:
        raise LungcadError("detector training needs the nodule annotations; the manifest "
                           f"has no column(s) {missing} (it is made for the JSRT manifest)")
    scale = image_size / 512.0
    centres = (np.arange(grid) + 0.5) * stride
    cy, cx = np.meshgrid(centres, centres, indexing="ij")
    nodule = np.zeros((len(rows), grid, grid), np.float32)
    malignant = np.zeros_like(nodule)
    for k, (_, row) in enumerate(rows.iterrows()):
        if str(row["label"]) == "non_nodule" or pd.isna(row["x_512"]):
            continue
        x, y = float(row["x_512"]) * scale, float(row["y_512"]) * scale
        radius = max(float(row["size_mm"]) / 2, min_radius_mm) / JSRT_PIXEL_MM_AT_512 * scale
        disc = (cx - x) ** 2 + (cy - y) ** 2 <= radius ** 2
        disc[min(int(y // stride), grid - 1), min(int(x // stride), grid - 1)] = True
        nodule[k] = disc
        malignant[k] = disc * float(str(row["label"]) == "malignant")
    return nodule, malignant


def lesion_cell_targets(manifest, paths: Sequence[str], grid: int, image_size: int,
                        stride: int, min_radius_mm: float = 0.0, log=print
                        ) -> tuple[np.ndarray, np.ndarray]:
    """(nodule, malignant) cell maps (N, grid, grid) float32 for the manifest's ``paths``."""
    from lungcad.data.lesions import load_lesions

    lesions = load_lesions(manifest)
    rows = manifest.rows_for(list(paths))
    if lesions.frame is not None:
        log(f"lesion targets: {lesions.note}")
        return cell_targets(rows, grid, image_size, stride=stride, min_radius_mm=min_radius_mm)
    from lungcad.data.geometry import image_geometry, spacing_note

    geometry = image_geometry(manifest, paths)
    log(f"lesion targets from {lesions.source}; {spacing_note(geometry)}")
    centres = (np.arange(grid) + 0.5) * stride
    cy, cx = np.meshgrid(centres, centres, indexing="ij")
    nodule = np.zeros((len(paths), grid, grid), np.float32)
    malignant = np.zeros_like(nodule)
    image_malignant = dict(zip(rows["path"].astype(str), rows["label"].astype(str) == "malignant"))
    table = lesions.for_paths(paths)
    index = {str(p): k for k, p in enumerate(paths)}
    for _, lesion in table.iterrows():
        k, g = index[lesion["path"]], geometry[lesion["path"]]
        sx, sy = image_size / g.width, image_size / g.height
        x, y = float(lesion["x"]) * sx, float(lesion["y"]) * sy
        diameter = float(lesion["diameter_mm"]) if np.isfinite(lesion["diameter_mm"]) else 0.0
        radius_mm = max(diameter / 2, min_radius_mm)
        rx, ry = radius_mm / g.col_mm * sx, radius_mm / g.row_mm * sy
        cells = np.zeros((grid, grid), bool)
        if rx > 0 and ry > 0:
            cells |= ((cx - x) / rx) ** 2 + ((cy - y) / ry) ** 2 <= 1
        if bool(lesion["has_box"]):
            cells |= ((cx >= lesion["x0"] * sx) & (cx <= lesion["x1"] * sx)
                      & (cy >= lesion["y0"] * sy) & (cy <= lesion["y1"] * sy))
        row, col = int(np.clip(y // stride, 0, grid - 1)), int(np.clip(x // stride, 0, grid - 1))
        cells[row, col] = True
        nodule[k] = np.maximum(nodule[k], cells)
        bad = _truthy(lesion.get("malignant")) or image_malignant.get(lesion["path"], False)
        malignant[k] = np.maximum(malignant[k], cells * float(bad))
    return nodule, malignant


def _truthy(value) -> bool:
    if value is None:
        return False
    try:
        return float(value) == 1.0
    except (TypeError, ValueError):
        return str(value).strip().lower() in ("true", "yes", "malignant")

