"""Each image's size and pixel spacing, and where the spacing came from (never silently assumed).

In order: the ``spacing_mm`` column of ``labels.csv`` (millimetres a pixel, square pixels; the
importers write it where the source image's header has one); else the image's own header (DICOM
PixelSpacing, MetaImage ElementSpacing, NIfTI pixdim); else the stated assumption that lungcad's
detector also makes: the JSRT field of view, 358.4 mm across the image's width. Sizes come from
``labels.csv``'s ``width``/``height`` columns, else from the image. A ``spacing_from`` column
(the importers write it: "image header", "--spacing-mm") is carried into the stated source.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lungcad.jsrt_geometry import jsrt_mm_per_pixel
from lungcad.errors import LungcadError

SPACING_COLUMN = "spacing_mm"
FROM_COLUMN = "labels.csv spacing_mm"
FROM_HEADER = "image header"
ASSUMED = "assumed: JSRT field of view (358.4 mm across the image's width)"


@dataclass(frozen=True)
class Geometry:
    height: int
    width: int
    row_mm: float        # millimetres a pixel, down the rows
    col_mm: float        # millimetres a pixel, along the columns
    spacing_from: str    # FROM_COLUMN, FROM_HEADER or ASSUMED


def _numbers(table: pd.DataFrame, column: str) -> dict[str, float]:
    if column not in table.columns:
        return {}
    values = pd.to_numeric(table[column], errors="coerce").to_numpy(float)
    return {str(p): float(v) for p, v in zip(table["path"], values) if np.isfinite(v) and v > 0}


def image_geometry(manifest, paths) -> dict[str, Geometry]:
    """path -> :class:`Geometry` for the manifest's ``paths`` (images are opened only where
    labels.csv lacks their size or spacing)."""
    from lungcad.io import load_image

    table = manifest.table
    spacing = _numbers(table, SPACING_COLUMN)
    heights, widths = _numbers(table, "height"), _numbers(table, "width")
    origin = ({str(p): str(v) for p, v in zip(table["path"], table["spacing_from"])
               if isinstance(v, str) and v.strip()} if "spacing_from" in table.columns else {})
    out: dict[str, Geometry] = {}
    for path in map(str, paths):
        size = (heights.get(path), widths.get(path))
        header = None
        if None in size or path not in spacing:
            try:
                loaded = load_image(manifest.image_path(path))
            except LungcadError as exc:
                raise LungcadError(f"{path}: its size or spacing is needed and the image cannot "
                                   f"be read ({exc})") from None
            size = loaded.array.shape
            header = loaded.meta.pixel_spacing_mm
        height, width = int(size[0]), int(size[1])
        if path in spacing:
            source = f"{FROM_COLUMN} ({origin[path]})" if path in origin else FROM_COLUMN
            out[path] = Geometry(height, width, spacing[path], spacing[path], source)
        elif header is not None:
            out[path] = Geometry(height, width, float(header[0]), float(header[1]), FROM_HEADER)
        else:
            mm = jsrt_mm_per_pixel(width)
            out[path] = Geometry(height, width, mm, mm, ASSUMED)
    return out


def spacing_sources(geometry: dict[str, Geometry]) -> dict[str, int]:
    """How many images took their spacing from where."""
    return dict(sorted(Counter(g.spacing_from for g in geometry.values()).items()))


def spacing_note(geometry: dict[str, Geometry]) -> str:
    """One sentence saying where the spacings came from (assumptions named)."""
    counts = spacing_sources(geometry)
    parts = [f"{n} image(s): {source}" for source, n in counts.items()]
    return "pixel spacing: " + "; ".join(parts) if parts else "pixel spacing: no images"
