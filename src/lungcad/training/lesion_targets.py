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
:func:`lungcad.training.nodule_heatmap.cell_targets`, bit for bit.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def lesion_cell_targets(manifest, paths: Sequence[str], grid: int, image_size: int,
                        stride: int, min_radius_mm: float = 0.0, log=print
                        ) -> tuple[np.ndarray, np.ndarray]:
    """(nodule, malignant) cell maps (N, grid, grid) float32 for the manifest's ``paths``."""
    from lungcad.data.lesions import load_lesions

    lesions = load_lesions(manifest)
    rows = manifest.rows_for(list(paths))
    if lesions.frame is not None:
        from lungcad.training.nodule_heatmap import cell_targets

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

