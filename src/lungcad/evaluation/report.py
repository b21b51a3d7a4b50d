"""Build the evaluation report: one JSON-ready dict that every rendering (JSON, Markdown, HTML,
figures) is made from.

Top-level keys of the report (``format`` lungcad-evaluation/1):

- ``format``, ``software`` (lungcad version, created time), ``disclaimer``;
- ``inputs``: test and validation predictions (source, sha256, n, models, folds);
- ``task``: classes, binary, positive class, n, class counts;
- ``threshold``: ``{value, rule, chosen_on, source, description, ...}`` (its provenance);
- ``bootstrap``: resamples, confidence level, seed, resampling, interval methods;
- ``metrics``: ``{name: {value, ci_low, ci_high, ci_method, ci_undefined_resamples}}``;
- ``per_class``: multi-class only, ``{class: {metric: {...}}}`` (one-vs-rest);
- ``confusion_matrix``: ``{labels, counts}`` (rows: true class, columns: predicted class);
- ``calibration``: Brier score, ECE, binning, reliability bins;
- ``curves``: ROC and PR curve points, the operating point, score histograms;
- ``subgroups``: tables by metadata (subtlety, nodule size, sex, age, fold);
- ``figures``: the figures the renderers draw from the data above (id, title, caption);
- ``sections``: extra sections other parts of lungcad add (see :func:`make_section`);
- ``warnings``: anything the reader must know (e.g. threshold chosen on the scored data).
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd

from lungcad.disclaimer import DISCLAIMER
from lungcad.errors import LungcadError
from lungcad.evaluation.bootstrap import CONFIDENCE_LEVEL, MIN_CASES, bootstrap_intervals
from lungcad.evaluation.calibration import (
    BINNING_TEXT,
    expected_calibration_error,
    reliability_bins,
)
from lungcad.evaluation.metrics import (
    PER_CLASS_METRICS,
    binary_metric_values,
    multiclass_metric_values,
)
from lungcad.evaluation.predictions import Predictions, validate_predictions
from lungcad.evaluation.subgroups import subgroup_tables
from lungcad.evaluation.thresholds import resolve_threshold
from lungcad.version import __version__

REPORT_FORMAT = "lungcad-evaluation/1"
HISTOGRAM_BINS = 20


def evaluate_predictions(
    test: pd.DataFrame,
    validation: pd.DataFrame | None = None,
    threshold: str | None = None,
    n_bootstrap: int = 2000,
    seed: int = 0,
    extra_sections: list[dict] | None = None,
) -> dict:
    """Score a labelled predictions table; return the report (a JSON-ready dict).

    ``threshold``: None, ``"validation"``, a rule (``youden``, ``f1``, ``sensitivity:<x>``) or a
    number as text; see :mod:`lungcad.evaluation.thresholds`. ``extra_sections`` are
    appended to ``report["sections"]`` (build them with :func:`make_section`).
    """
    if n_bootstrap < 0:
        raise LungcadError(f"--bootstrap must be 0 (no intervals) or more, not {n_bootstrap}")
    # a threshold (a rule, a number, or chosen on validation) makes the decisions, so the test
    # file may lack predicted_label/model (e.g. a training run's val_predictions.csv); where the
    # predicted_label column is scored, its absence is reported below
    preds = validate_predictions(test, require_labels=True, require_decisions=False)
    # validation predictions only choose the threshold: predicted_label/model are not needed
    # (a training run's val_predictions.csv has neither)
    val = (validate_predictions(validation, require_labels=True, require_decisions=False)
           if validation is not None else None)
    warnings = _input_warnings(preds)
    if n_bootstrap and len(preds) < MIN_CASES:
        warnings.append(f"only {len(preds)} case: no confidence intervals (bootstrap needs at "
                        f"least {MIN_CASES} cases); the metrics describe that case alone")
    threshold_record, threshold_warnings = resolve_threshold(preds, val, threshold)
    warnings += threshold_warnings

    if preds.binary and threshold_record["value"] is not None:
        predicted = (preds.positive_scores >= threshold_record["value"]).astype(int)
    elif "predicted_label" not in preds.frame.columns:
        raise LungcadError(
            f"{preds.source}: has no predicted_label column, and "
            + ("a multi-class report scores it" if not preds.binary else "no threshold was given")
            + "; add the column (lungcad predict writes it)"
            + (", or give --threshold RULE_OR_NUMBER" if preds.binary else ""))
    else:
        predicted = preds.predicted

    report = {
        "format": REPORT_FORMAT,
        "software": {"lungcad": __version__,
                     "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")},
        "disclaimer": DISCLAIMER,
        "inputs": {"test": _describe_input(preds),
                   "validation": _describe_input(val) if val is not None else None},
        "task": {
            "classes": list(preds.classes),
            "binary": preds.binary,
            "positive_class": preds.classes[-1] if preds.binary else None,
            "n": len(preds),
            "class_counts": {c: int((preds.y == i).sum()) for i, c in enumerate(preds.classes)},
        },
        "threshold": threshold_record,
        "bootstrap": {
            "n_resamples": int(n_bootstrap),
            "confidence_level": CONFIDENCE_LEVEL,
            "seed": int(seed),
            "resampling": "cases (rows) with replacement, the same resamples for every metric "
                          "(paired); the threshold is held fixed",
            "method": "scipy.stats.bootstrap BCa; percentile where BCa is degenerate (recorded "
                      "per metric as ci_method)",
        },
    }
    report.update(_metrics_section(preds, predicted, n_bootstrap, seed))
    report["confusion_matrix"] = _confusion_matrix(preds, predicted)
    report["calibration"] = _calibration(preds)
    report["curves"] = _curves(preds, report)
    report["subgroups"] = subgroup_tables(preds, predicted)
    report["figures"] = _figure_list(report)
    report["sections"] = []
    for section in extra_sections or []:
        add_section(report, section)
    report["warnings"] = warnings
    return report


# ---------------------------------------------------------------------------------------------
# extension point: extra sections (e.g. localisation scores added by lungcad explain)

def make_section(title: str, paragraphs: list[str] | None = None,
                 tables: list[dict] | None = None, images: list[dict] | None = None,
                 section_id: str | None = None) -> dict:
    """An extra report section that report.md and report.html render after the built-in ones.

    - ``paragraphs``: plain text, one string per paragraph;
    - ``tables``: ``{"title": str, "columns": [names], "rows": [{name: value}]}``;
    - ``images``: ``{"title": str, "caption": str, "png_base64": str}`` (a PNG, base64-encoded;
      it is embedded in report.html and written beside report.md).
    """
    section = {
        "id": section_id or "".join(ch if ch.isalnum() else "-" for ch in title.lower()).strip("-"),
        "title": title,
        "paragraphs": list(paragraphs or []),
        "tables": list(tables or []),
        "images": list(images or []),
    }
    _check_section(section)
    return section


def sections_report(inputs: dict, sections: list[dict], warnings: list[str] | None = None) -> dict:
    """A report with no predictions scored, only ``sections`` (e.g. FROC of findings alone)."""
    report = {
        "format": REPORT_FORMAT,
        "software": {"lungcad": __version__,
                     "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")},
        "disclaimer": DISCLAIMER, "inputs": inputs, "figures": [], "sections": [],
        "warnings": list(warnings or []),
    }
    for section in sections:
        add_section(report, section)
    return report


def add_section(report: dict, section: dict) -> dict:
    """Append a section (from :func:`make_section`, or a dict of the same shape) to a report."""
    section = make_section(section["title"], section.get("paragraphs"), section.get("tables"),
                           section.get("images"), section.get("id"))
    report.setdefault("sections", []).append(section)
    return report


def _check_section(section: dict) -> None:
    if not isinstance(section["title"], str) or not section["title"].strip():
        raise ValueError("a report section needs a non-empty title")
    for table in section["tables"]:
        if not {"columns", "rows"} <= set(table):
            raise ValueError(f"section {section['title']!r}: a table needs columns and rows")
    for image in section["images"]:
        if not isinstance(image.get("png_base64"), str):
            raise ValueError(f"section {section['title']!r}: an image needs png_base64 text")


# ---------------------------------------------------------------------------------------------

def _none_if_nan(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _input_warnings(preds: Predictions) -> list[str]:
    warnings = []
    duplicated = preds.frame["path"].duplicated()
    models = (sorted(preds.frame["model"].astype(str).unique())
              if "model" in preds.frame.columns else [])
    if duplicated.any():
        if len(models) > 1:
            raise LungcadError(
                f"{preds.source}: {int(duplicated.sum())} image(s) are scored more than once, by "
                f"{len(models)} models ({', '.join(models[:5])}); evaluate one model at a time "
                "(lungcad evaluate --model NAME)"
            )
        warnings.append(f"{int(duplicated.sum())} image path(s) appear more than once; repeated "
                        "rows count twice and make the intervals too narrow")
    for i, c in enumerate(preds.classes):
        if not (preds.y == i).any():
            warnings.append(f"no case of class {c!r} in {preds.source}; metrics of that class "
                            "are undefined")
    return warnings


def _describe_input(preds: Predictions) -> dict:
    frame = preds.frame
    return {
        "source": preds.source,
        "sha256": frame.attrs.get("sha256"),
        "n": len(preds),
        "models": sorted(frame["model"].astype(str).unique()) if "model" in frame else [],
        "folds": sorted(frame["fold"].dropna().astype(str).unique()) if "fold" in frame else None,
    }


def _metric_record(value: float, interval) -> dict:
    return {"value": _none_if_nan(value), **interval.as_dict()}


def _metrics_section(preds: Predictions, predicted: np.ndarray, n_bootstrap: int, seed: int) -> dict:
    y, probs = preds.y, preds.probs
    if preds.binary:
        scores = preds.positive_scores

        def statistic(idx: np.ndarray) -> dict:
            return binary_metric_values(y[idx], scores[idx], predicted[idx])
    else:
        k = len(preds.classes)

        def statistic(idx: np.ndarray) -> dict:
            return multiclass_metric_values(y[idx], probs[idx], predicted[idx], k)

    with np.errstate(all="ignore"):
        point = statistic(np.arange(len(preds)))
        intervals = bootstrap_intervals(len(preds), statistic, n_bootstrap, seed)
    records = {name: _metric_record(point[name], intervals[name]) for name in point}
    overall = {name: rec for name, rec in records.items() if "/" not in name}
    section = {"metrics": overall}
    if not preds.binary:
        section["per_class"] = {
            c: {m: records[f"{i}/{m}"] for m in PER_CLASS_METRICS}
            for i, c in enumerate(preds.classes)
        }
    return section


def _confusion_matrix(preds: Predictions, predicted: np.ndarray) -> dict:
    k = len(preds.classes)
    counts = np.zeros((k, k), dtype=int)
    np.add.at(counts, (preds.y, predicted), 1)
    return {"labels": list(preds.classes), "counts": counts.tolist(),
            "rows": "true class", "columns": "predicted class"}


def _calibration(preds: Predictions) -> dict:
    if preds.binary:
        confidence, outcome = preds.positive_scores, (preds.y == 1).astype(float)
        kind = f"binary: probability of {preds.classes[-1]!r} against the fraction of positives"
    else:
        confidence = preds.probs.max(axis=1)
        outcome = (preds.probs.argmax(axis=1) == preds.y).astype(float)
        kind = "top-label: highest class probability against the fraction whose top class is right"
    return {
        "kind": kind,
        "binning": BINNING_TEXT,
        "ece": expected_calibration_error(confidence, outcome),
        "bins": reliability_bins(confidence, outcome),
    }


def _json_thresholds(values: np.ndarray) -> list:
    return [float(v) if np.isfinite(v) else None for v in values]


def _curves(preds: Predictions, report: dict) -> dict:
    from sklearn.metrics import precision_recall_curve, roc_curve

    score_classes = [len(preds.classes) - 1] if preds.binary else range(len(preds.classes))
    roc, pr, histograms = {}, {}, []
    edges = np.linspace(0, 1, HISTOGRAM_BINS + 1)
    for k in score_classes:
        name = preds.classes[k]
        is_k = (preds.y == k).astype(int)
        scores = preds.probs[:, k]
        if 0 < is_k.sum() < len(is_k):
            fpr, tpr, thr = roc_curve(is_k, scores)
            roc[name] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": _json_thresholds(thr)}
            precision, recall, thr = precision_recall_curve(is_k, scores)
            pr[name] = {"precision": precision.tolist(), "recall": recall.tolist(),
                        "thresholds": _json_thresholds(thr), "prevalence": float(is_k.mean())}
        if preds.binary:
            groups = {c: preds.y == i for i, c in enumerate(preds.classes)}
        else:
            groups = {name: preds.y == k, f"not {name}": preds.y != k}
        histograms.append({
            "score": f"prob_{name}",
            "edges": edges.tolist(),
            "counts": {g: np.histogram(scores[m], bins=edges)[0].tolist() for g, m in groups.items()},
        })
    curves = {"roc": roc, "pr": pr, "score_histograms": histograms}
    threshold = report["threshold"]
    if preds.binary:
        metrics = report["metrics"]
        sens, spec = metrics["sensitivity"]["value"], metrics["specificity"]["value"]
        curves["operating_point"] = {
            "threshold": threshold["value"],
            "tpr": sens,
            "fpr": None if spec is None else 1 - spec,
            "recall": sens,
            "precision": metrics["ppv"]["value"],
        }
    return curves


def _figure_list(report: dict) -> list[dict]:
    binary = report["task"]["binary"]
    positive = report["task"]["positive_class"]
    figures = []
    if report["curves"]["roc"]:
        figures.append({"id": "roc", "title": "ROC curve",
                        "caption": (f"ROC curve for {positive!r}; the dot marks the operating "
                                    "point of the threshold applied" if binary else
                                    "One-vs-rest ROC curve per class")})
    if report["curves"]["pr"]:
        figures.append({"id": "pr", "title": "Precision-recall curve",
                        "caption": ("Dashed line: prevalence (a classifier with no skill)"
                                    + ("; the dot marks the operating point" if binary else ""))})
    figures += [
        {"id": "confusion_matrix", "title": "Confusion matrix",
         "caption": "Rows: true class; columns: predicted class"},
        {"id": "reliability", "title": "Reliability diagram",
         "caption": report["calibration"]["kind"] + "; " + report["calibration"]["binning"]},
        {"id": "score_histograms", "title": "Score histograms",
         "caption": "Distribution of the predicted probability, by true class"},
    ]
    return figures
