"""FROC evaluation of nodule detection: marks ``(x, y, radius_mm, score)`` per image against the
nodules of a dataset's ``labels.csv`` (JSRT: ``x_512``, ``y_512``, ``size_mm``).

Hit rule: a mark hits a nodule when its centre lies within the nodule's radius (``size_mm / 2``)
plus ``margin_mm`` of the nodule's centre (distance in mm, ``<=``, with 1e-6 mm for rounding). A mark within reach of
several nodules hits the nearest one only. A nodule hit by several marks is found once, at the
best score among them; its other marks are not false positives. Every mark that hits no nodule
is a false positive. The mark's own ``radius_mm`` is checked but does not enter the rule.

Curve: one operating point per distinct score threshold (marks with score >= t kept), starting
at (0 FP, 0 sensitivity). Sensitivity at 1/8 ... 8 FP per image is read off this polyline by
linear interpolation (as LUNA16 does); at an FP rate where the curve rises vertically the top
is taken, and beyond the last point the last (highest) sensitivity holds. ``interpolation=
"step"`` gives instead the highest sensitivity of an operating point at or below the rate.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lungcad.jsrt_geometry import (
    JSRT_COORD_COLUMNS,
    JSRT_COORD_FRAME,
    JSRT_PIXEL_MM_AT_512,
    jsrt_mm_per_pixel,
)
from lungcad.errors import LungcadError
from lungcad.evaluation.bootstrap import bootstrap_intervals

DEFAULT_MARGIN_MM = 5.0
FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
BREAKDOWN_FP_RATE = 2.0
FINDINGS_COLUMNS = ("path", "x", "y", "radius_mm", "score")
SIZE_BANDS = ((0.0, 10.0, "<10 mm"), (10.0, 20.0, "10-20 mm"), (20.0, 30.0, "20-30 mm"),
              (30.0, np.inf, ">=30 mm"))
INTERPOLATIONS = ("linear", "step")
HIT_TOLERANCE_MM = 1e-6  # floating-point rounding of pixel -> mm; far below any pixel
FROC_FORMAT = "lungcad-froc/1"


@dataclass(frozen=True)
class Truth:
    """The images counted (all of them, with or without marks) and their nodules (in mm)."""
    images: tuple[str, ...]
    nodules: pd.DataFrame  # path, x_mm, y_mm, radius_mm, size_mm, subtlety (may be NaN)


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
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
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
        bad = ~np.isfinite(values)
        if bad.any():
            rows = (np.flatnonzero(bad) + 1).tolist()[:5]
            raise LungcadError(f"{source}: {column} is missing or not a finite number on data "
                               f"row(s) {rows}")
        out[column] = values
    for column, strict in (("radius_mm", False), ("frame_size", True)):
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


# --------------------------------------------------------------------------------------------
# matching and the curve

@dataclass(frozen=True)
class Events:
    """Everything the curve needs, per image: FP marks and nodules with their best hit score."""
    n_images: int
    fp_image: np.ndarray      # image index of every false-positive mark
    fp_score: np.ndarray
    nodule_image: np.ndarray  # image index of every nodule
    nodule_score: np.ndarray  # best score of a mark hitting it; -inf when none does
    mark_nodule: np.ndarray   # per findings row: nodule index hit, -1 for a false positive


def match(findings: pd.DataFrame, truth: Truth, margin_mm: float = DEFAULT_MARGIN_MM) -> Events:
    """Apply the hit rule (module docstring) to every mark."""
    if not np.isfinite(margin_mm) or margin_mm < 0:
        raise LungcadError(f"the hit margin must be zero or more millimetres, not {margin_mm}")
    index = {p: i for i, p in enumerate(truth.images)}
    nod = truth.nodules
    nodule_image = np.array([index[p] for p in nod["path"]], dtype=int)
    mark_image = np.array([index[p] for p in findings["path"]], dtype=int)
    scale = np.array([jsrt_mm_per_pixel(s) for s in findings["frame_size"]], dtype=float)
    mx, my = findings["x"].to_numpy(float) * scale, findings["y"].to_numpy(float) * scale
    mark_nodule = np.full(len(findings), -1, dtype=int)
    if len(nod) and len(findings):
        dist = np.hypot(mx[:, None] - nod["x_mm"].to_numpy()[None, :],
                        my[:, None] - nod["y_mm"].to_numpy()[None, :])
        reach = nod["radius_mm"].to_numpy()[None, :] + margin_mm
        hits = (dist <= reach + HIT_TOLERANCE_MM) & (mark_image[:, None] == nodule_image[None, :])
        dist = np.where(hits, dist, np.inf)
        nearest = dist.argmin(axis=1)
        mark_nodule = np.where(hits.any(axis=1), nearest, -1)
    scores = findings["score"].to_numpy(float)
    nodule_score = np.full(len(nod), -np.inf)
    hit = mark_nodule >= 0
    np.maximum.at(nodule_score, mark_nodule[hit], scores[hit])
    fp = ~hit
    return Events(len(truth.images), mark_image[fp], scores[fp], nodule_image, nodule_score,
                  mark_nodule)


def _curve(events: Events, image_weights: np.ndarray | None = None):
    """Thresholds (descending), FP per image and sensitivity, with (0, 0) first at +inf."""
    w = np.ones(events.n_images) if image_weights is None else image_weights
    fp_w, nod_w = w[events.fp_image], w[events.nodule_image]
    n_nodules = nod_w.sum()
    found = np.isfinite(events.nodule_score)
    scores = np.concatenate([events.fp_score, events.nodule_score[found]])
    d_fp = np.concatenate([fp_w, np.zeros(found.sum())])
    d_tp = np.concatenate([np.zeros(len(events.fp_score)), nod_w[found]])
    order = np.argsort(-scores, kind="stable")
    scores, d_fp, d_tp = scores[order], d_fp[order], d_tp[order]
    last = np.flatnonzero(np.r_[scores[1:] != scores[:-1], True]) if len(scores) else []
    thresholds = np.r_[np.inf, scores[last]]
    fps = np.r_[0.0, np.cumsum(d_fp)[last]] / w.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = np.r_[0.0, np.cumsum(d_tp)[last]] / n_nodules
    return thresholds, fps, sens


def sensitivity_at(fps: np.ndarray, sens: np.ndarray, rates=FP_RATES,
                   interpolation: str = "linear") -> np.ndarray:
    """Sensitivity at each FP rate on the curve (fps non-decreasing, (0, 0) first)."""
    if interpolation not in INTERPOLATIONS:
        raise LungcadError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}")
    out = np.empty(len(rates))
    for k, rate in enumerate(rates):
        at_or_below = fps <= rate
        best = sens[at_or_below].max()  # (0, 0) is always there
        j = np.flatnonzero(at_or_below)[-1]
        if interpolation == "linear" and fps[j] < rate and j + 1 < len(fps):
            x0, x1, y0, y1 = fps[j], fps[j + 1], sens[j], sens[j + 1]
            best = y0 + (y1 - y0) * (rate - x0) / (x1 - x0)
        out[k] = best
    return out


def _breakdown(truth: Truth, events: Events, thresholds, fps) -> dict:
    """Fraction of nodules found, by subtlety and size band, at the lowest threshold whose FP
    rate is at most ``BREAKDOWN_FP_RATE`` per image."""
    j = np.flatnonzero(fps <= BREAKDOWN_FP_RATE)[-1]
    t = float(thresholds[j])
    found = events.nodule_score >= t
    nod = truth.nodules

    def rows(groups) -> list[dict]:
        out = []
        for name, mask in groups:
            n = int(mask.sum())
            out.append({"group": name, "nodules": n, "found": int(found[mask].sum()),
                        "fraction_found": float(found[mask].mean()) if n else None})
        return out

    sub = nod["subtlety"].to_numpy(float)
    size = nod["size_mm"].to_numpy(float)
    return {
        "fp_rate": BREAKDOWN_FP_RATE,
        "threshold": None if np.isinf(t) else t,
        "fp_per_image": float(fps[j]),
        "subtlety": rows((str(int(s)), sub == s) for s in sorted(set(sub[np.isfinite(sub)]))),
        "size": rows((name, (size >= lo) & (size < hi)) for lo, hi, name in SIZE_BANDS),
    }


def cpm_of(events: Events, image_weights: np.ndarray | None = None,
           interpolation: str = "linear") -> float:
    """The CPM of matched marks (:func:`match`), images weighted by ``image_weights`` (counts of
    a bootstrap resample; default each image once)."""
    _, fps, sens = _curve(events, image_weights)
    return float(sensitivity_at(fps, sens, FP_RATES, interpolation).mean())


def froc_analysis(findings: pd.DataFrame, truth: Truth, margin_mm: float = DEFAULT_MARGIN_MM,
                  n_bootstrap: int = 2000, seed: int = 0,
                  interpolation: str = "linear") -> dict:
    """The whole FROC result (JSON-ready; written as froc.json)."""
    findings = normalise_paths(validate_findings(findings), truth)
    if not truth.images:
        raise LungcadError("no images to evaluate the findings on")
    if truth.nodules.empty:
        raise LungcadError("the images evaluated hold no nodule (no row with x_512, y_512 and "
                           "size_mm), so sensitivity is undefined")
    events = match(findings, truth, margin_mm)
    thresholds, fps, sens = _curve(events)
    point = sensitivity_at(fps, sens, FP_RATES, interpolation)
    names = [f"sensitivity@{r:g}" for r in FP_RATES]

    def statistic(idx: np.ndarray) -> dict:
        flat = idx.reshape(-1, idx.shape[-1])
        values = np.empty((len(flat), len(FP_RATES)))
        for r, row in enumerate(flat):
            weights = np.bincount(row, minlength=events.n_images).astype(float)
            _, f, s = _curve(events, weights)
            values[r] = (sensitivity_at(f, s, FP_RATES, interpolation)
                         if np.isfinite(s).all() else np.nan)
        shape = idx.shape[:-1]
        out = {n: values[:, k].reshape(shape) for k, n in enumerate(names)}
        out["cpm"] = values.mean(axis=1).reshape(shape)
        return out

    intervals = bootstrap_intervals(events.n_images, statistic, n_bootstrap, seed)
    at_rates = [{"fp_per_image": r, "sensitivity": float(v), **intervals[n].as_dict()}
                for r, v, n in zip(FP_RATES, point, names)]
    return {
        "format": FROC_FORMAT,
        "hit_rule": (f"a mark hits a nodule when its centre is within the nodule's radius "
                     f"(size_mm / 2) + {margin_mm:g} mm of the nodule's centre; a mark near "
                     "several nodules hits the nearest; several marks on one nodule count once "
                     "(best score) and are not false positives; every other mark is a false "
                     "positive"),
        "margin_mm": float(margin_mm),
        "interpolation": interpolation,
        "n_images": events.n_images,
        "n_images_with_nodules": int(len(set(truth.nodules["path"]))),
        "n_nodules": int(len(truth.nodules)),
        "n_marks": int(len(findings)),
        "n_false_positive_marks": int(len(events.fp_score)),
        "n_nodules_found": int(np.isfinite(events.nodule_score).sum()),
        "curve": {"threshold": [None if np.isinf(t) else float(t) for t in thresholds],
                  "fp_per_image": fps.tolist(), "sensitivity": sens.tolist()},
        "sensitivity_at": at_rates,
        "cpm": {"value": float(point.mean()), **intervals["cpm"].as_dict()},
        "bootstrap": {"n_resamples": int(n_bootstrap), "seed": int(seed),
                      "resampling": "images with replacement (an image's marks and nodules "
                                    "travel together)",
                      "method": "scipy.stats.bootstrap BCa; percentile where BCa is degenerate"},
        "breakdown": _breakdown(truth, events, thresholds, fps),
    }


def froc_curve(findings: pd.DataFrame, truth: Truth, margin_mm: float = DEFAULT_MARGIN_MM
               ) -> dict:
    """Operating points only: ``{threshold, fp_per_image, sensitivity}`` lists."""
    findings = normalise_paths(validate_findings(findings), truth)
    thresholds, fps, sens = _curve(match(findings, truth, margin_mm))
    return {"threshold": thresholds.tolist(), "fp_per_image": fps.tolist(),
            "sensitivity": sens.tolist()}


# --------------------------------------------------------------------------------------------
# the report section

def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def froc_section(froc: dict) -> dict:
    """A report section (see :func:`lungcad.evaluation.report.make_section`) with the FROC."""
    from lungcad.evaluation.figures import froc_figure
    from lungcad.evaluation.report import make_section

    def ci(record: dict) -> str:
        if record.get("ci_low") is None:
            return "n/a"
        return f"{record['ci_low']:.3f} to {record['ci_high']:.3f}"

    rows = [{"FP per image": f"{r['fp_per_image']:g}", "sensitivity": _fmt(r["sensitivity"]),
             "95% CI": ci(r)} for r in froc["sensitivity_at"]]
    rows.append({"FP per image": "CPM (mean)", "sensitivity": _fmt(froc["cpm"]["value"]),
                 "95% CI": ci(froc["cpm"])})
    bd = froc["breakdown"]
    group_columns = ["group", "nodules", "found", "fraction_found"]
    tables = [{"title": "Sensitivity at fixed false-positive rates",
               "columns": ["FP per image", "sensitivity", "95% CI"], "rows": rows}]
    for key, title in (("subtlety", "Nodules found by subtlety"),
                       ("size", "Nodules found by size (diameter)")):
        if bd[key]:
            tables.append({"title": f"{title}, at {bd['fp_per_image']:.3f} FP per image",
                           "columns": group_columns, "rows": bd[key]})
    boot = froc["bootstrap"]
    paragraphs = [
        f"{froc['n_marks']} marks on {froc['n_images']} images "
        f"({froc['n_images_with_nodules']} with nodules; {froc['n_nodules']} nodules, "
        f"{froc['n_nodules_found']} found at any score). Hit rule: {froc['hit_rule']}.",
        f"Sensitivity at each FP rate is read off the curve by {froc['interpolation']} "
        "interpolation (LUNA16); CPM is the mean over the seven rates. 95% intervals: "
        f"{boot['n_resamples']} bootstrap resamples of {boot['resampling']} (seed {boot['seed']}).",
        f"Group tables: fraction of nodules found at the lowest score threshold giving at most "
        f"{bd['fp_rate']:g} FP per image ({_fmt(bd['threshold'])}, {bd['fp_per_image']:.3f} FP "
        "per image); small groups give very uncertain fractions.",
    ]
    image = {"title": "FROC curve",
             "caption": "Sensitivity against mean false positives per image (log 2 axis); dots: "
                        "the seven LUNA16 rates with 95% bootstrap intervals",
             "png_base64": base64.b64encode(froc_figure(froc)).decode("ascii")}
    return make_section("FROC (nodule detection)", paragraphs, tables, [image], section_id="froc")
