"""The FROC truth of a dataset's lesion table (:mod:`lungcad.data.lesions`), in millimetres.

Lesions from ``lesions.csv`` are in each image's own pixels: they and the marks are turned into
millimetres by each image's spacing (:mod:`lungcad.data.geometry`: the ``spacing_mm`` column, the
image header, or the stated JSRT field-of-view assumption). Lesions derived from JSRT columns
keep the JSRT rule: their frame at 0.7 mm a pixel at 512 px, the marks at their ``frame_size``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lungcad.jsrt_geometry import jsrt_mm_per_pixel
from lungcad.errors import LungcadError
from lungcad.evaluation.froc_inputs import Truth


def truth_from_lesions(manifest, images: list[str] | None = None, lesions=None) -> Truth:
    """The :class:`Truth` of ``images`` (default: every image of the manifest) from the
    dataset's lesions (``lesions``: a :class:`LesionTable`, default read from the dataset)."""
    from lungcad.data.lesions import load_lesions

    lesions = lesions if lesions is not None else load_lesions(manifest)
    known = [str(p) for p in manifest.table["path"]]
    images = known if images is None else [str(p) for p in images]
    unknown = sorted(set(images) - set(known))
    if unknown:
        raise LungcadError(f"{len(unknown)} image(s) are not in {manifest.root / 'labels.csv'}, "
                           f"e.g. {unknown[:3]}")
    rows = lesions.for_paths(images).reset_index(drop=True)
    notes = [lesions.note] if lesions.note else []
    if lesions.frame is not None:
        scale = jsrt_mm_per_pixel(lesions.frame)
        row_mm = col_mm = np.full(len(rows), scale)
        mm_per_pixel = None
    else:
        from lungcad.data.geometry import image_geometry, spacing_note

        geometry = image_geometry(manifest, images)
        notes.append(spacing_note(geometry))
        mm_per_pixel = {p: (g.row_mm, g.col_mm) for p, g in geometry.items()}
        row_mm = np.array([geometry[p].row_mm for p in rows["path"]], dtype=float)
        col_mm = np.array([geometry[p].col_mm for p in rows["path"]], dtype=float)
    return Truth(tuple(dict.fromkeys(images)), lesion_frame_mm(rows, row_mm, col_mm),
                 mm_per_pixel, tuple(notes))


def lesion_frame_mm(rows: pd.DataFrame, row_mm: np.ndarray, col_mm: np.ndarray) -> pd.DataFrame:
    """Checked lesion rows (pixels) as the truth's table in millimetres. A box lesion's size is
    its longer side; a centre lesion's its diameter."""
    box = {c: rows[c].to_numpy(float) for c in ("x0", "y0", "x1", "y1")}
    box_mm = {"x0_mm": box["x0"] * col_mm, "y0_mm": box["y0"] * row_mm,
              "x1_mm": box["x1"] * col_mm, "y1_mm": box["y1"] * row_mm}
    has_box = rows["has_box"].to_numpy(bool) if len(rows) else np.zeros(0, bool)
    box_size = np.fmax(box_mm["x1_mm"] - box_mm["x0_mm"], box_mm["y1_mm"] - box_mm["y0_mm"])
    size = np.where(has_box, box_size, rows["diameter_mm"].to_numpy(float))
    subtlety = (pd.to_numeric(rows["subtlety"], errors="coerce").to_numpy(float)
                if "subtlety" in rows.columns else np.full(len(rows), np.nan))
    return pd.DataFrame({
        "path": rows["path"].astype(str).to_numpy(),
        "x_mm": rows["x"].to_numpy(float) * col_mm, "y_mm": rows["y"].to_numpy(float) * row_mm,
        "radius_mm": size / 2, "size_mm": size, "subtlety": subtlety,
        "label": rows["label"].astype(str).to_numpy(),
        **{k: np.where(has_box, v, np.nan) for k, v in box_mm.items()},
    })
