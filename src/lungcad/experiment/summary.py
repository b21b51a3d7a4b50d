"""An experiment's summary: each fold's test metrics at its own validation threshold, their
mean ± SD, the pooled out-of-fold report (``DIR/report/``), ``summary.json`` and ``summary.md``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from lungcad.provenance import write_json

SUMMARY_FORMAT = "lungcad-experiment-summary/1"
BINARY_FOLD_METRICS = ("accuracy", "roc_auc", "log_loss", "sensitivity", "specificity")
MULTICLASS_FOLD_METRICS = ("accuracy", "macro_roc_auc", "log_loss", "balanced_accuracy",
                           "macro_f1")


def fold_metric_values(test: pd.DataFrame) -> dict[str, float | None]:
    """Accuracy, AUC, log loss, sensitivity and specificity (binary) or their multi-class
    counterparts, of one fold's test predictions at its own validation threshold."""
    from lungcad.evaluation.metrics import binary_metric_values, multiclass_metric_values
    from lungcad.evaluation.predictions import validate_predictions

    preds = validate_predictions(test, require_labels=True)
    with np.errstate(all="ignore"):
        if preds.binary:
            values = binary_metric_values(preds.y, preds.positive_scores, preds.predicted)
            names = BINARY_FOLD_METRICS
        else:
            values = multiclass_metric_values(preds.y, preds.probs, preds.predicted,
                                              len(preds.classes))
            names = MULTICLASS_FOLD_METRICS
    return {n: (float(values[n]) if np.isfinite(values[n]) else None) for n in names}


def mean_sd(values: Sequence[float | None]) -> dict:
    """Mean and sample SD (n - 1) over the folds where the metric is defined."""
    defined = [float(v) for v in values if v is not None and math.isfinite(v)]
    mean = float(np.mean(defined)) if defined else None
    sd = float(np.std(defined, ddof=1)) if len(defined) > 1 else None
    return {"mean": mean, "sd": sd, "n_folds": len(defined), "values": list(values)}


def pooled_localisation(results: Sequence[dict]) -> dict:
    """Every fold's per-image records together: overall and per subtlety."""
    from lungcad.explain.localisation import summarise

    records = [dict(r, fold=k) for k, result in enumerate(results) for r in result["per_image"]]
    group_by = results[0]["settings"]["group_by"] if results else "subtlety"
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(str(r.get(group_by)), []).append(r)

    def order(key: str):
        try:
            return (0, float(key), key)
        except ValueError:
            return (1, 0.0, key)

    return {"settings": results[0]["settings"] if results else None,
            "overall": summarise(records),
            f"by_{group_by}": {k: summarise(groups[k]) for k in sorted(groups, key=order)},
            "n_per_fold": [len(r["per_image"]) for r in results]}


def summarise_experiment(oof: pd.DataFrame, outcomes: Sequence,
                         frames: Sequence[pd.DataFrame], task,
                         localisation: Sequence[dict] | None, out_dir: Path, total_folds: int,
                         n_bootstrap: int, seed: int, warnings: list[str],
                         froc: dict | None = None) -> dict:
    """Evaluate the pooled out-of-fold predictions (DIR/report/) and write summary.json/.md;
    ``froc``: a detector's FROC of its out-of-fold marks (:mod:`lungcad.experiment.detection`)."""
    from lungcad.evaluation.render import write_report
    from lungcad.evaluation.report import evaluate_predictions

    # threshold None: each row's predicted_label as its fold wrote it, at that fold's own
    # validation threshold; nothing is chosen on the pooled test rows
    names = BINARY_FOLD_METRICS if task.binary else MULTICLASS_FOLD_METRICS
    per_fold = [fold_metric_values(f) for f in frames]
    folds = []
    for o, values in zip(outcomes, per_fold):
        folds.append({"fold": o.fold, "directory": str(o.directory), "n_train": o.n_train,
                      "n_val": o.n_val, "n_test": o.n_test, "trained_this_run": o.trained_now,
                      "threshold": o.threshold, "metrics": values})
    fold_stats = {n: mean_sd([v[n] for v in per_fold]) for n in names}
    pooled_loc = pooled_localisation(localisation) if localisation else None
    sections = [_folds_section(folds, fold_stats, names, task)]
    if pooled_loc is not None:
        sections.append(_localisation_section(pooled_loc))
    report = evaluate_predictions(oof, None, None, n_bootstrap, seed, extra_sections=sections)
    write_report(report, out_dir / "report")
    pooled = {n: {k: report["metrics"][n][k] for k in ("value", "ci_low", "ci_high")}
              for n in names}
    summary = {
        "format": SUMMARY_FORMAT,
        "task": task.name, "classes": list(task.classes),
        "folds_run": len(outcomes), "folds_in_split": total_folds,
        "n_out_of_fold": int(len(oof)),
        "threshold_policy": "Each fold's threshold was chosen on that fold's validation "
                            "predictions only and applied unchanged to its test part; the "
                            "pooled figures score those decisions (no threshold is chosen on "
                            "test predictions)",
        "folds": folds,
        "per_fold_mean_sd": fold_stats,
        "pooled": pooled,
        "pooled_report": {"path": str(out_dir / "report" / "report.json"),
                          "threshold": report["threshold"], "n_bootstrap": n_bootstrap},
        "localisation": pooled_loc,
        "froc": None if froc is None else {
            "path": "froc/froc.json", "margin_mm": froc["margin_mm"],
            "n_nodules": froc["n_nodules"], "n_images": froc["n_images"], "cpm": froc["cpm"],
            "sensitivity_at": froc["sensitivity_at"],
            "image_level": froc.get("image_level")},
        "warnings": warnings + list(report["warnings"]),
    }
    write_json(out_dir / "summary.json", summary)
    from lungcad.atomic import atomic_write

    atomic_write(out_dir / "summary.md", summary_markdown(summary).encode())
    return summary


def _fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_mean_sd(stat: dict) -> str:
    if stat["mean"] is None:
        return "n/a"
    return _fmt(stat["mean"]) + (f" ± {_fmt(stat['sd'])}" if stat["sd"] is not None else "")


def _format_pooled(record: dict) -> str:
    text = _fmt(record["value"])
    if record.get("ci_low") is not None and record.get("ci_high") is not None:
        text += f" ({_fmt(record['ci_low'])} to {_fmt(record['ci_high'])})"
    return text


def _folds_section(folds: list[dict], stats: dict, names: Sequence[str], task) -> dict:
    from lungcad.evaluation.report import make_section

    rows = []
    for f in folds:
        t = f["threshold"]["value"]
        rows.append({"fold": str(f["fold"]), "n test": str(f["n_test"]),
                     "n val": str(f["n_val"]), "threshold (val)": _fmt(t, 4),
                     **{n: _fmt(f["metrics"][n]) for n in names}})
    rows.append({"fold": "mean ± SD", "n test": "", "n val": "", "threshold (val)": "",
                 **{n: format_mean_sd(stats[n]) for n in names}})
    rule = "its own validation threshold" if task.binary else "its most probable class"
    return make_section(
        "Cross-validation folds",
        [f"Each fold's model was trained on the fold's training part and scored on its held-out "
         f"test part at {rule}, chosen on the fold's validation part only. The figures above "
         "pool every fold's test predictions (out of fold); below, each fold on its own, with "
         "the mean and sample standard deviation across folds."],
        [{"title": "Per-fold test metrics", "columns": list(rows[0]), "rows": rows}],
        section_id="cross-validation")


def _localisation_section(pooled: dict) -> dict:
    from lungcad.evaluation.report import make_section

    def row(group: str, s: dict) -> dict:
        rate = s["peak_hit"]
        ci = rate["ci95"]
        return {"group": group, "n": str(s["n"]),
                "peak hit": (f"{_fmt(rate['rate'])} ({_fmt(ci[0])} to {_fmt(ci[1])})"
                             if rate["rate"] is not None else "n/a"),
                "top-3 hit": _fmt(s["top3_hit"]["rate"]),
                "chance": _fmt(s["chance_peak_hit_mean"]),
                "lung share": _fmt(s["lung_share_mean"])}

    group_key = next(k for k in pooled if k.startswith("by_"))
    rows = [row("all", pooled["overall"])]
    rows += [row(f"{group_key[3:]} {k}", s) for k, s in pooled[group_key].items()]
    settings = pooled["settings"] or {}
    return make_section(
        "Localisation (out of fold)",
        ["Saliency maps of each fold's model on its own test images with a known nodule "
         f"position: a hit is the map's peak within the nodule's radius plus "
         f"{settings.get('margin_mm')} mm of its centre. 'chance' is the hit rate of a peak "
         "placed at random in the lung fields; Wilson 95% intervals."],
        [{"title": "Peak hit rates", "columns": list(rows[0]), "rows": rows}],
        section_id="localisation")


def summary_markdown(summary: dict) -> str:
    names = list(summary["per_fold_mean_sd"])
    lines = [f"# Cross-validation: {summary['task']}", "",
             "Research software, not a medical device.", "",
             f"{summary['folds_run']} of {summary['folds_in_split']} fold(s), "
             f"{summary['n_out_of_fold']} out-of-fold test predictions. "
             + summary["threshold_policy"] + ".", "",
             "| metric | per-fold mean ± SD | pooled (95% CI) |", "|---|---|---|"]
    for n in names:
        lines.append(f"| {n} | {format_mean_sd(summary['per_fold_mean_sd'][n])} | "
                     f"{_format_pooled(summary['pooled'][n])} |")
    lines += ["", "| fold | n test | threshold (val) | " + " | ".join(names) + " |",
              "|---" * (3 + len(names)) + "|"]
    for f in summary["folds"]:
        lines.append(f"| {f['fold']} | {f['n_test']} | {_fmt(f['threshold']['value'], 4)} | "
                     + " | ".join(_fmt(f["metrics"][n]) for n in names) + " |")
    loc = summary.get("localisation")
    if loc:
        peak = loc["overall"]["peak_hit"]
        lines += ["", f"Localisation (out of fold): peak hit rate {_fmt(peak['rate'])} on "
                      f"{peak['n']} nodule image(s); chance "
                      f"{_fmt(loc['overall']['chance_peak_hit_mean'])}."]
    froc = summary.get("froc")
    if froc:
        cpm = froc["cpm"]
        lines += ["", f"Nodule marks (FROC, out of fold, margin {froc['margin_mm']:g} mm): "
                      f"CPM {_format_pooled(cpm)} on {froc['n_nodules']} nodules in "
                      f"{froc['n_images']} images; sensitivity "
                      + ", ".join(f"{_fmt(r['sensitivity'])} at {r['fp_per_image']:g}"
                                  for r in froc["sensitivity_at"])
                      + " false positives per image. Report: froc/report.html"]
        for question, rows in (froc.get("image_level") or {}).items():
            lines += ["", f"{question.replace('_', ' ')}, out of fold: " + "; ".join(
                f"{name} AUC {_format_pooled(value)}" for name, value in rows.items())]
    if summary["warnings"]:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in summary["warnings"]]
    lines += ["", "Full report of the pooled predictions: report/report.html", ""]
    return "\n".join(lines)
