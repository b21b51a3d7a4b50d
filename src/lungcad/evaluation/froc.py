"""FROC evaluation of nodule detection: marks ``(x, y, radius_mm, score)`` per image against the
lesions of a dataset (its ``lesions.csv``, any number an image, or JSRT's ``x_512``, ``y_512``,
``size_mm``; :mod:`lungcad.evaluation.froc_inputs`, :mod:`lungcad.evaluation.lesion_truth`).

Hit rule, in millimetres (1e-6 mm allowed for rounding): a mark hits a lesion given by centre and
diameter when its centre lies within the lesion's radius plus ``margin_mm`` of the lesion's
centre (``<=``); it hits a lesion given by a box when its centre lies inside the box grown by
``margin_mm`` on every side (edges included). A mark that hits several lesions (say inside two
overlapping boxes) hits the one whose centre is nearest only (the first listed on a tie). A nodule hit by several marks is found once, at the
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

import numpy as np
import pandas as pd

from lungcad.jsrt_geometry import jsrt_mm_per_pixel
from lungcad.errors import LungcadError
from lungcad.evaluation.bootstrap import bootstrap_intervals
from lungcad.evaluation.froc_inputs import (  # noqa: F401 - the inputs' names, as before
    FINDINGS_COLUMNS,
    Truth,
    normalise_paths,
    read_findings,
    relative_paths,
    truth_from_table,
    validate_findings,
)

DEFAULT_MARGIN_MM = 5.0
FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
BREAKDOWN_FP_RATE = 2.0
SIZE_BANDS = ((0.0, 10.0, "<10 mm"), (10.0, 20.0, "10-20 mm"), (20.0, 30.0, "20-30 mm"),
              (30.0, np.inf, ">=30 mm"))
INTERPOLATIONS = ("linear", "step")
HIT_TOLERANCE_MM = 1e-6  # floating-point rounding of pixel -> mm; far below any pixel
FROC_FORMAT = "lungcad-froc/1"


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


def marks_in_mm(findings: pd.DataFrame, truth: Truth) -> tuple[np.ndarray, np.ndarray]:
    """The marks' centres in millimetres: by each image's spacing (``truth.mm_per_pixel``), or
    by JSRT geometry at the marks' ``frame_size`` where the truth has no spacings."""
    x, y = findings["x"].to_numpy(float), findings["y"].to_numpy(float)
    if truth.mm_per_pixel is None:
        sizes = findings["frame_size"].to_numpy(float)
        if np.isnan(sizes).any():
            row = int(np.flatnonzero(np.isnan(sizes))[0]) + 1
            raise LungcadError(f"findings data row {row}: no frame_size (a mark on a non-square "
                               "image), and the dataset's nodules are in a JSRT frame; give the "
                               "dataset a lesions.csv in the images' own pixels")
        scale = np.array([jsrt_mm_per_pixel(s) for s in sizes], dtype=float)
        return x * scale, y * scale
    spacing = np.array([truth.mm_per_pixel[p] for p in findings["path"]], dtype=float)
    spacing = spacing.reshape(len(findings), 2)
    return x * spacing[:, 1], y * spacing[:, 0]


def hit_matrix(mx: np.ndarray, my: np.ndarray, nodules: pd.DataFrame,
               margin_mm: float) -> np.ndarray:
    """(marks, lesions) bool: the mark's centre within a disc lesion's radius + margin of its
    centre, or inside a box lesion grown by the margin on every side (images not compared)."""
    box = np.column_stack([nodules[c].to_numpy(float) for c in ("x0_mm", "y0_mm", "x1_mm",
                                                                  "y1_mm")])
    is_box = np.isfinite(box).all(axis=1)
    dist = np.hypot(mx[:, None] - nodules["x_mm"].to_numpy()[None, :],
                    my[:, None] - nodules["y_mm"].to_numpy()[None, :])
    reach = nodules["radius_mm"].to_numpy()[None, :] + margin_mm
    disc_hit = dist <= reach + HIT_TOLERANCE_MM
    grow = margin_mm + HIT_TOLERANCE_MM
    with np.errstate(invalid="ignore"):
        box_hit = ((mx[:, None] >= box[None, :, 0] - grow) & (mx[:, None] <= box[None, :, 2] + grow)
                   & (my[:, None] >= box[None, :, 1] - grow)
                   & (my[:, None] <= box[None, :, 3] + grow))
    return np.where(is_box[None, :], box_hit, disc_hit)


def match(findings: pd.DataFrame, truth: Truth, margin_mm: float = DEFAULT_MARGIN_MM) -> Events:
    """Apply the hit rule (module docstring) to every mark."""
    if not np.isfinite(margin_mm) or margin_mm < 0:
        raise LungcadError(f"the hit margin must be zero or more millimetres, not {margin_mm}")
    index = {p: i for i, p in enumerate(truth.images)}
    nod = truth.nodules
    nodule_image = np.array([index[p] for p in nod["path"]], dtype=int)
    mark_image = np.array([index[p] for p in findings["path"]], dtype=int)
    mx, my = marks_in_mm(findings, truth)
    mark_nodule = np.full(len(findings), -1, dtype=int)
    if len(nod) and len(findings):
        hits = hit_matrix(mx, my, nod, margin_mm) & (mark_image[:, None] == nodule_image[None, :])
        dist = np.hypot(mx[:, None] - nod["x_mm"].to_numpy()[None, :],
                        my[:, None] - nod["y_mm"].to_numpy()[None, :])
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
    labels = nod["label"].astype(str).to_numpy()
    return {
        "fp_rate": BREAKDOWN_FP_RATE,
        "threshold": None if np.isinf(t) else t,
        "fp_per_image": float(fps[j]),
        "subtlety": rows((str(int(s)), sub == s) for s in sorted(set(sub[np.isfinite(sub)]))),
        "size": rows((name, (size >= lo) & (size < hi)) for lo, hi, name in SIZE_BANDS),
        "label": rows((name, labels == name) for name in sorted(set(labels))),
    }


def by_label(truth: Truth, events: Events, interpolation: str = "linear") -> list[dict]:
    """Per lesion label (nodule, mass...): the sensitivity at each FP rate, counting every
    false mark of every image (a mark is not told which label it looks for)."""
    labels = truth.nodules["label"].astype(str).to_numpy()
    out = []
    for name in sorted(set(labels)):
        keep = labels == name
        sub = Events(events.n_images, events.fp_image, events.fp_score,
                     events.nodule_image[keep], events.nodule_score[keep], events.mark_nodule)
        _, fps, sens = _curve(sub)
        values = sensitivity_at(fps, sens, FP_RATES, interpolation)
        out.append({"label": name, "lesions": int(keep.sum()),
                    "found_at_any_score": int(np.isfinite(events.nodule_score[keep]).sum()),
                    "sensitivity_at": {f"{r:g}": float(v) for r, v in zip(FP_RATES, values)},
                    "cpm": float(values.mean())})
    return out


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
    from lungcad.evaluation.lesion_figures import image_level_auc

    findings = normalise_paths(validate_findings(findings), truth)
    if not truth.images:
        raise LungcadError("no images to evaluate the findings on")
    if truth.nodules.empty:
        raise LungcadError("the images evaluated hold no nodule or other lesion (no lesions.csv "
                           "row, nor a row with x_512, y_512 and size_mm), so sensitivity is "
                           "undefined")
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
        "hit_rule": (f"a mark hits a lesion when its centre is within the lesion's radius "
                     f"(diameter / 2) + {margin_mm:g} mm of the lesion's centre, or, for a "
                     f"lesion given as a box, inside the box grown by {margin_mm:g} mm on every "
                     "side; a mark that hits several lesions hits the one with the nearest "
                     "centre; several marks on one lesion count once (best score) and are not "
                     "false positives; every other mark is a false positive"),
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
        "by_label": by_label(truth, events, interpolation),
        "image_level_auc": image_level_auc(findings, truth, n_bootstrap, seed),
        "lesions_and_spacing": list(truth.notes),
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
    from lungcad.evaluation.lesion_figures import node21_rows

    tables.append({"title": "NODE21's figures (sensitivity at 1/8, 1/4, 1/2 FP per image; "
                            "image-level AUC of the strongest mark)",
                   "columns": ["figure", "value", "95% CI"], "rows": node21_rows(froc)})
    if len(froc.get("by_label", [])) > 1:
        tables.append({"title": "Sensitivity by lesion label (false marks of every image count)",
                       "columns": ["label", "lesions", *[f"@{r:g}" for r in FP_RATES], "CPM"],
                       "rows": [{"label": r["label"], "lesions": r["lesions"],
                                 **{f"@{k}": _fmt(v) for k, v in r["sensitivity_at"].items()},
                                 "CPM": _fmt(r["cpm"])} for r in froc["by_label"]]})
    for key, title in (("subtlety", "Nodules found by subtlety"),
                       ("size", "Nodules found by size (diameter)"),
                       ("label", "Lesions found by label")):
        if bd.get(key) and (key != "label" or len(bd[key]) > 1):
            tables.append({"title": f"{title}, at {bd['fp_per_image']:.3f} FP per image",
                           "columns": group_columns, "rows": bd[key]})
    boot = froc["bootstrap"]
    paragraphs = [
        f"{froc['n_marks']} marks on {froc['n_images']} images "
        f"({froc['n_images_with_nodules']} with nodules; {froc['n_nodules']} nodules, "
        f"{froc['n_nodules_found']} found at any score). Hit rule: {froc['hit_rule']}.",
        *[f"{note[0].upper()}{note[1:]}." for note in froc.get("lesions_and_spacing", [])],
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
