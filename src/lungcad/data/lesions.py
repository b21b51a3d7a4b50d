"""The lesion table: ``lesions.csv`` beside ``labels.csv``, one row a lesion, any number an image.

Columns (docs/lesions.md): ``path`` (a ``labels.csv`` path), a box ``x0,y0,x1,y1`` and/or a centre
``x,y`` with ``diameter_mm``, ``label`` (nodule, mass...; blank: ``lesion``), optional ``reader``,
``confidence`` and any other column (kept). Coordinates are in the image's **own pixels**, in the
convention of lungcad's marks: x = column, y = row, 0 at the *centre* of the first pixel, so a box
covering whole pixel columns 10 to 29 runs from x0 = 9.5 to x1 = 29.5. An image without lesions is
a ``labels.csv`` row with no row here.

A dataset without ``lesions.csv`` whose ``labels.csv`` has JSRT's nodule columns (``x_N``,
``y_N``, ``size_mm``) still works: one lesion per such row is derived, in the N x N frame of JSRT
geometry (0.7 mm a pixel at 512 px), and :attr:`LesionTable.note` says so wherever it is used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lungcad.jsrt_geometry import JSRT_COORD_FRAME, jsrt_mm_per_pixel
from lungcad.errors import LungcadError

LESIONS_FILE = "lesions.csv"
BOX_COLUMNS = ("x0", "y0", "x1", "y1")
CENTRE_COLUMNS = ("x", "y", "diameter_mm")
OPTIONAL_COLUMNS = ("reader", "confidence")
WRITE_COLUMNS = ("path", *BOX_COLUMNS, *CENTRE_COLUMNS, "label", *OPTIONAL_COLUMNS)
DEFAULT_LABEL = "lesion"
_FRAME = re.compile(r"^x_(\d+)$")


@dataclass(frozen=True)
class LesionTable:
    """A dataset's lesions, checked. ``table``: path, label, x0, y0, x1, y1, x, y, diameter_mm
    (NaN where not given; x, y filled from the box centre), has_box, and any other column.
    ``frame``: None when the coordinates are the image's own pixels (lesions.csv); N when they
    were derived from JSRT columns and are in an N x N frame of JSRT geometry. ``note``: how the
    lesions were obtained, where a user must be told (derived, not read)."""

    table: pd.DataFrame
    frame: int | None = None
    source: str = LESIONS_FILE
    note: str | None = None

    def for_paths(self, paths) -> pd.DataFrame:
        return self.table[self.table["path"].isin(set(map(str, paths)))]

    @property
    def labels(self) -> list[str]:
        return sorted(set(self.table["label"].astype(str)))


def _numeric(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame.columns:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)


def check_lesions(frame: pd.DataFrame, known_paths, source: str = LESIONS_FILE,
                  sizes: dict[str, tuple[int, int]] | None = None) -> pd.DataFrame:
    """A checked, normalised copy of a lesion table (module docstring). ``known_paths``: the
    dataset's images; ``sizes``: path -> (height, width) where known, to refuse boxes and
    centres outside the image. Errors name the file and the data row (1 = first data row)."""
    if "path" not in frame.columns:
        raise LungcadError(f"{source}: lacks the column path; a lesion table needs path and a box "
                           f"({','.join(BOX_COLUMNS)}) or a centre ({','.join(CENTRE_COLUMNS)})")
    has_box_columns = all(c in frame.columns for c in BOX_COLUMNS)
    has_centre_columns = all(c in frame.columns for c in CENTRE_COLUMNS)
    if not (has_box_columns or has_centre_columns):
        raise LungcadError(f"{source}: has neither box columns ({','.join(BOX_COLUMNS)}) nor "
                           f"centre columns ({','.join(CENTRE_COLUMNS)})")
    out = frame.copy()
    out["path"] = out["path"].astype(str).str.strip()
    known = set(map(str, known_paths))
    values = {c: _numeric(out, c) for c in (*BOX_COLUMNS, *CENTRE_COLUMNS)}
    for i in range(len(out)):
        row = f"{source} data row {i + 1}"
        path = out["path"].iat[i]
        if path in ("", "nan") or path not in known:
            raise LungcadError(f"{row}: path {path!r} is not an image of the dataset's labels.csv")
        box = [values[c][i] for c in BOX_COLUMNS]
        centre = [values[c][i] for c in CENTRE_COLUMNS]
        if all(np.isfinite(box)):
            x0, y0, x1, y1 = box
            if not (x0 < x1 and y0 < y1):
                raise LungcadError(f"{row} ({path}): the box needs x0 < x1 and y0 < y1, got "
                                   f"{x0:g},{y0:g},{x1:g},{y1:g}")
        elif any(np.isfinite(box)):
            raise LungcadError(f"{row} ({path}): the box is incomplete (give all of "
                               f"{','.join(BOX_COLUMNS)} or none)")
        elif not all(np.isfinite(centre)):
            raise LungcadError(f"{row} ({path}): neither a box ({','.join(BOX_COLUMNS)}) nor a "
                               f"centre with a diameter ({','.join(CENTRE_COLUMNS)}) is given")
        if np.isfinite(centre[2]) and centre[2] <= 0:
            raise LungcadError(f"{row} ({path}): diameter_mm must be positive, got {centre[2]:g}")
        if sizes and path in sizes:
            _check_inside(row, path, box, centre, sizes[path])
    has_box = np.isfinite(np.column_stack([values[c] for c in BOX_COLUMNS])).all(axis=1)
    for c in (*BOX_COLUMNS, *CENTRE_COLUMNS):
        out[c] = values[c]
    out["x"] = np.where(np.isfinite(out["x"]), out["x"], (out["x0"] + out["x1"]) / 2)
    out["y"] = np.where(np.isfinite(out["y"]), out["y"], (out["y0"] + out["y1"]) / 2)
    out["has_box"] = has_box
    labels = out["label"] if "label" in out.columns else pd.Series([""] * len(out), index=out.index)
    out["label"] = [normalise_label(v) for v in labels]
    return out.reset_index(drop=True)


def _check_inside(row: str, path: str, box, centre, size: tuple[int, int]) -> None:
    height, width = size
    xs = [v for v in (box[0], box[2], centre[0]) if np.isfinite(v)]
    ys = [v for v in (box[1], box[3], centre[1]) if np.isfinite(v)]
    tol = 1e-6
    if any(v < -0.5 - tol or v > width - 0.5 + tol for v in xs) or \
            any(v < -0.5 - tol or v > height - 0.5 + tol for v in ys):
        raise LungcadError(f"{row} ({path}): the lesion lies outside the {width}x{height} image "
                           "(coordinates are the image's own pixels, 0 at the centre of the "
                           "first pixel)")


def normalise_label(value) -> str:
    """'Nodule' -> 'nodule', 'Nodule/Mass' -> 'nodule_mass'; blank -> 'lesion'."""
    text = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
    text = re.sub(r"[^a-z0-9]+", "_", text.strip().lower()).strip("_")
    return text or DEFAULT_LABEL


def jsrt_frame(table: pd.DataFrame) -> int | None:
    """The frame of JSRT nodule columns to derive lesions from: 512 where ``x_512``/``y_512``
    are there, else the smallest N with ``x_N`` and ``y_N``; None without them or size_mm."""
    if "size_mm" not in table.columns:
        return None
    frames = sorted(int(m.group(1)) for c in table.columns if (m := _FRAME.match(str(c)))
                    and f"y_{m.group(1)}" in table.columns)
    if not frames:
        return None
    return JSRT_COORD_FRAME if JSRT_COORD_FRAME in frames else frames[0]


def derive_jsrt_lesions(table: pd.DataFrame, frame: int) -> pd.DataFrame:
    """One lesion per labels row with finite ``x_N``, ``y_N`` and ``size_mm`` (N = ``frame``)."""
    x, y, size = (_numeric(table, c) for c in (f"x_{frame}", f"y_{frame}", "size_mm"))
    keep = np.isfinite(x) & np.isfinite(y) & np.isfinite(size)
    if (size[keep] <= 0).any():
        raise LungcadError("labels.csv: a nodule has a size_mm of zero or less")
    out = pd.DataFrame({"path": table["path"].astype(str).to_numpy()[keep],
                        "x0": np.nan, "y0": np.nan, "x1": np.nan, "y1": np.nan,
                        "x": x[keep], "y": y[keep], "diameter_mm": size[keep],
                        "label": "nodule", "has_box": False})
    if "subtlety" in table.columns:
        out["subtlety"] = _numeric(table, "subtlety")[keep]
    return out


def derived_note(frame: int, root) -> str:
    return (f"{root} has no {LESIONS_FILE}: one nodule a row derived from labels.csv "
            f"(x_{frame}, y_{frame}, size_mm) in JSRT geometry ({frame} px frame, "
            f"{jsrt_mm_per_pixel(frame):g} mm a pixel)")


def load_lesions(manifest, required: bool = True) -> LesionTable | None:
    """The lesions of a dataset (:class:`lungcad.data.manifest.Manifest`): its lesions.csv, or,
    without one, lesions derived from JSRT columns (said in ``note``). None (or, when
    ``required``, an error saying what to add) where the dataset names no lesion at all."""
    path = Path(manifest.root) / LESIONS_FILE
    table = manifest.table
    if path.is_file():
        try:
            raw = pd.read_csv(path, dtype={"path": str, "label": str, "reader": str})
        except pd.errors.EmptyDataError:
            raw = pd.DataFrame(columns=list(WRITE_COLUMNS))
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise LungcadError(f"cannot read {path}: {first}") from None
        return LesionTable(check_lesions(raw, table["path"], str(path), known_sizes(table)),
                           None, str(path))
    frame = jsrt_frame(table)
    if frame is not None:
        return LesionTable(derive_jsrt_lesions(table, frame), frame,
                           str(Path(manifest.root) / "labels.csv"),
                           derived_note(frame, manifest.root))
    if required:
        raise LungcadError(f"{manifest.root} names no lesions: it has no {LESIONS_FILE} (one row "
                           "a lesion: path, x0,y0,x1,y1 and/or x,y,diameter_mm, label; see "
                           "docs/lesions.md) and no JSRT nodule columns (x_512, y_512, size_mm)")
    return None


def known_sizes(table: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """path -> (height, width) from labels.csv's ``height``/``width`` columns, where given."""
    if not {"height", "width"} <= set(table.columns):
        return {}
    h, w = _numeric(table, "height"), _numeric(table, "width")
    return {str(p): (int(a), int(b)) for p, a, b in zip(table["path"], h, w)
            if np.isfinite(a) and np.isfinite(b) and a > 0 and b > 0}


def lesions_csv_text(table: pd.DataFrame) -> str:
    """A lesion table as lesions.csv text (the documented columns first, then any others)."""
    from lungcad.csvsafe import neutralise_formulas

    extra = [c for c in table.columns if c not in WRITE_COLUMNS and c != "has_box"]
    out = table.reindex(columns=[*WRITE_COLUMNS, *extra])
    return neutralise_formulas(out).to_csv(index=False, lineterminator="\n", float_format="%.6g")
