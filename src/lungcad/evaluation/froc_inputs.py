"""The inputs of a FROC analysis: the findings table (marks) and the truth (the lesions of the
images evaluated, in millimetres), with their checks. See :mod:`lungcad.evaluation.froc`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lungcad.jsrt_geometry import (
    JSRT_COORD_COLUMNS,
    JSRT_COORD_FRAME,
    JSRT_PIXEL_MM_AT_512,
)
from lungcad.errors import LungcadError, first_line

FINDINGS_COLUMNS = ("path", "x", "y", "radius_mm", "score")
TRUTH_COLUMNS = ("path", "x_mm", "y_mm", "radius_mm", "size_mm", "subtlety", "label", "x0_mm",
                 "y0_mm", "x1_mm", "y1_mm")


@dataclass(frozen=True)
class Truth:
    """The images counted (all of them, with or without marks) and their lesions in mm
    (:data:`TRUTH_COLUMNS`; the box columns are NaN for a lesion given by centre and diameter,
    subtlety NaN where unknown). ``mm_per_pixel``: path -> (row, column) millimetres a pixel of
    the marks' coordinates; None: the marks are in a square JSRT-geometry frame of their
    ``frame_size`` (the JSRT datasets' rule). ``notes``: how lesions and spacings were obtained
    where a reader must be told (derived, assumed)."""
    images: tuple[str, ...]
    nodules: pd.DataFrame
    mm_per_pixel: dict | None = None
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self):
        nodules = self.nodules.copy()
        for column in TRUTH_COLUMNS:
            if column not in nodules.columns:
                nodules[column] = "nodule" if column == "label" else np.nan
        object.__setattr__(self, "nodules", nodules)


# --------------------------------------------------------------------------------------------
# inputs

def read_findings(path: str | Path) -> pd.DataFrame:
    """Read ``findings.csv`` (path, x, y, radius_mm, score, optional frame_size) and check it."""
    path = Path(path)
    if not path.is_file():
        raise LungcadError(f"findings file {path} does not exist")
    try:
        frame = pd.read_csv(path, dtype={"path": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        first = first_line(exc)
        raise LungcadError(f"findings file {path} is not a readable CSV ({first})") from None
    return validate_findings(frame, str(path))


def validate_findings(frame: pd.DataFrame, source: str = "findings") -> pd.DataFrame:
    """A checked copy with numeric columns and ``frame_size`` (default 512, the JSRT frame)."""
    missing = [c for c in FINDINGS_COLUMNS if c not in frame.columns]
    if missing:
        raise LungcadError(f"{source}: lacks the column(s) {', '.join(missing)}; a findings table "
                           f"needs {', '.join(FINDINGS_COLUMNS)} (optional frame_size)")
    out = frame.copy()
    if out["path"].isna().any():
        rows = (np.flatnonzero(out["path"].isna().to_numpy()) + 1).tolist()[:5]
        raise LungcadError(f"{source}: empty path on data row(s) {rows}")
    out["path"] = out["path"].astype(str)
    if "frame_size" not in out.columns:
        out["frame_size"] = JSRT_COORD_FRAME
    for column in ("x", "y", "radius_mm", "score", "frame_size"):
        values = pd.to_numeric(out[column], errors="coerce").to_numpy(dtype=float)
        # a blank frame_size: a mark on a non-square image (needed only for JSRT-frame truths)
        bad = ~np.isfinite(values) & ~(np.isnan(values) & (column == "frame_size"))
        if bad.any():
            rows = (np.flatnonzero(bad) + 1).tolist()[:5]
            raise LungcadError(f"{source}: {column} is missing or not a finite number on data "
                               f"row(s) {rows}")
        out[column] = values
    for column, strict in (("radius_mm", False), ("frame_size", True)):
        with np.errstate(invalid="ignore"):
            bad = out[column].to_numpy() <= 0 if strict else out[column].to_numpy() < 0
        if bad.any():
            rows = (np.flatnonzero(bad) + 1).tolist()[:5]
            what = "positive" if strict else "zero or more"
            raise LungcadError(f"{source}: {column} must be {what}; it is not on data row(s) {rows}")
    return out.reset_index(drop=True)


def truth_from_table(table: pd.DataFrame, images: list[str] | None = None,
                     source: str = "labels.csv") -> Truth:
    """Nodules of a labels table: rows with finite ``x_512``, ``y_512`` and ``size_mm``.

    ``images``: the images counted (default every row of the table); each must be in it.
    """
    x_col, y_col = JSRT_COORD_COLUMNS
    missing = [c for c in (x_col, y_col, "size_mm") if c not in table.columns]
    if missing:
        raise LungcadError(f"{source}: lacks the column(s) {', '.join(missing)}, so it names no "
                           "nodule positions (a JSRT dataset from lungcad data prepare has them)")
    known = table["path"].astype(str).tolist()
    if images is None:
        images = known
    unknown = sorted(set(images) - set(known))
    if unknown:
        raise LungcadError(f"{len(unknown)} image(s) are not in {source}, e.g. {unknown[:3]}")
    rows = table[table["path"].astype(str).isin(set(images))]
    coords = {c: pd.to_numeric(rows[c], errors="coerce") for c in (x_col, y_col, "size_mm")}
    is_nodule = np.isfinite(np.column_stack([v.to_numpy(float) for v in coords.values()])).all(1)
    sizes = coords["size_mm"].to_numpy(float)[is_nodule]
    if (sizes < 0).any():
        raise LungcadError(f"{source}: a nodule has a negative size_mm")
    subtlety = (pd.to_numeric(rows["subtlety"], errors="coerce").to_numpy(float)[is_nodule]
                if "subtlety" in rows.columns else np.full(len(sizes), np.nan))
    nodules = pd.DataFrame({
        "path": rows["path"].astype(str).to_numpy()[is_nodule],
        "x_mm": coords[x_col].to_numpy(float)[is_nodule] * JSRT_PIXEL_MM_AT_512,
        "y_mm": coords[y_col].to_numpy(float)[is_nodule] * JSRT_PIXEL_MM_AT_512,
        "radius_mm": sizes / 2, "size_mm": sizes, "subtlety": subtlety,
    })
    return Truth(tuple(dict.fromkeys(images)), nodules)


def relative_paths(paths: list[str], root: str | Path | None, known: set[str]) -> list[str]:
    """Paths not in ``known`` that are absolute and inside ``root``, made relative to it."""
    paths = [str(p) for p in paths]
    if root is None:
        return paths
    base = Path(root).resolve()
    for i, p in enumerate(paths):
        if p not in known and Path(p).is_absolute():
            try:
                paths[i] = Path(p).resolve().relative_to(base).as_posix()
            except ValueError:
                pass
    return paths


def normalise_paths(findings: pd.DataFrame, truth: Truth, root: str | Path | None = None,
                    source: str = "findings") -> pd.DataFrame:
    """Map absolute paths inside ``root`` to the truth's relative ones; refuse unknown paths."""
    known = set(truth.images)
    paths = relative_paths(findings["path"].tolist(), root, known)
    unknown = sorted({p for p in paths if p not in known})
    if unknown:
        raise LungcadError(f"{source}: {len(unknown)} path(s) are not among the images evaluated "
                           f"(the dataset's labels.csv, or the predictions file), e.g. "
                           f"{', '.join(unknown[:3])}")
    out = findings.copy()
    out["path"] = paths
    return out


