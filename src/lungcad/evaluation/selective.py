"""Two report sections of ``lungcad evaluate`` (issue 15): calibration before and after, and
selective prediction (the risk-coverage curve).

**Calibration before / after.** The "after" probabilities are cross-fitted by the predictions'
``fold`` column: each fold's images go through a map (Platt scaling for binary, temperature
scaling for multi-class) fitted on the OTHER folds only
(:func:`lungcad.evaluation.calibration.crossfit_calibration`). With out-of-fold predictions
(``lungcad experiment``'s oof_predictions.csv) that is calibration fitted on out-of-fold
predictions only, and scored on images it was not fitted on. Without a ``fold`` column there is
no honest "after", and the section says so. ECE and Brier carry percentile bootstrap intervals
(rows resampled, the same resamples before and after).

**Selective prediction.** The model abstains on the X% of images it is least sure of
(binary: probability nearest the threshold; multi-class: lowest top-class probability), or, where
the predictions carry ``domain_score`` (lungcad predict with a model that has a domain check),
on the X% most out of domain; accuracy (and ROC AUC for binary) of the images it keeps.
"""

from __future__ import annotations

import numpy as np

from lungcad.evaluation.calibration import (calibration_scores, crossfit_calibration,
                                            ece_noise_floor)
from lungcad.evaluation.metrics import roc_auc
from lungcad.evaluation.thresholds import DEFAULT_THRESHOLD

FLOOR_COLUMN = "ECE if perfectly calibrated: mean [95th percentile]"
FLOOR_TEXT = ("Binned ECE is biased upwards on small sets: the floor column is the ECE that a "
              "perfectly calibrated model with the same probabilities would show on the same "
              "number of images (outcomes drawn from the probabilities, 1,000 draws). A measured "
              "ECE near that floor is no evidence of miscalibration, and a goal below the floor "
              "cannot be shown on this many images.")
COVERAGES = (1.0, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5)
N_RESAMPLES = 1000


def _interval(probs: np.ndarray, y: np.ndarray, key: str, n: int, seed: int) -> list:
    if n < 1 or len(y) < 2:  # --bootstrap 0, or one case: no interval
        return [None, None]
    rng = np.random.default_rng(seed)
    values = [calibration_scores(probs[idx], y[idx])[key]
              for idx in (rng.integers(0, len(y), len(y)) for _ in range(n))]
    return [float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))]


def calibration_comparison(preds, n_resamples: int = N_RESAMPLES, seed: int = 0) -> dict:
    """ECE and Brier before and after cross-fitted calibration, with intervals."""
    probs, y = preds.probs, preds.y
    out = {"method": "platt" if preds.binary else "temperature",
           "before": calibration_scores(probs, y)}
    n = min(n_resamples, 2000)
    for key in ("ece", "brier"):
        out["before"][f"{key}_ci95"] = _interval(probs, y, key, n, seed)
    out["before"]["ece_floor"] = ece_noise_floor(probs, seed=seed)
    if "fold" not in preds.frame.columns or preds.frame["fold"].nunique() < 2:
        out["after"] = None
        out["note"] = ("no fold column with two or more folds: calibration cannot be fitted out "
                       "of fold here, so no 'after' is given")
        return out
    after_probs = crossfit_calibration(probs, y, preds.frame["fold"].to_numpy())
    out["after"] = calibration_scores(after_probs, y)
    for key in ("ece", "brier"):
        out["after"][f"{key}_ci95"] = _interval(after_probs, y, key, n, seed)
    out["after"]["ece_floor"] = ece_noise_floor(after_probs, seed=seed)
    out["note"] = ("calibration fitted on out-of-fold predictions only: each fold's images "
                   "calibrated by a map fitted on the other folds' predictions")
    return out


def _confidence(preds, threshold: float | None) -> np.ndarray:
    if preds.binary:
        t = DEFAULT_THRESHOLD if threshold is None else threshold
        return np.abs(preds.probs[:, 1] - t)
    return preds.probs.max(axis=1)


def risk_coverage(preds, threshold: float | None = None) -> dict:
    """Accuracy (and binary ROC AUC) of the images kept when abstaining on the rest."""
    predicted = ((preds.probs[:, 1] >= threshold).astype(int)
                 if preds.binary and threshold is not None else preds.predicted)
    correct = predicted == preds.y
    orders = {"least confident": np.argsort(-_confidence(preds, threshold), kind="stable")}
    if "domain_score" in preds.frame.columns:
        scores = preds.frame["domain_score"].astype(float).to_numpy()
        orders["most out of domain"] = np.argsort(scores, kind="stable")
    curves = {}
    for name, order in orders.items():
        rows = []
        for coverage in COVERAGES:
            kept = order[:max(1, int(round(coverage * len(order))))]
            row = {"coverage": coverage, "n": int(len(kept)),
                   "accuracy": float(correct[kept].mean())}
            if preds.binary:
                auc = float(roc_auc(preds.y[kept] == 1, preds.probs[kept, 1]))
                row["roc_auc"] = auc if np.isfinite(auc) else None
            rows.append(row)
        curves[name] = rows
    return curves


def selective_sections(preds, threshold: float | None, n_resamples: int, seed: int):
    """(JSON for report.json, [report sections]) of the two analyses."""
    from lungcad.evaluation.report import make_section

    calibration = calibration_comparison(preds, n_resamples, seed)
    curves = risk_coverage(preds, threshold)

    def fmt(entry, key):
        lo, hi = entry[f"{key}_ci95"]
        return f"{entry[key]:.3f}" + ("" if lo is None else f" [{lo:.3f}, {hi:.3f}]")

    def row(name, entry):
        floor = entry["ece_floor"]
        return {"": name, "ECE [95% CI]": fmt(entry, "ece"),
                FLOOR_COLUMN: f"{floor['mean']:.3f} [{floor['p95']:.3f}]",
                "Brier [95% CI]": fmt(entry, "brier")}

    rows = [row("before (as given)", calibration["before"])]
    if calibration["after"]:
        rows.append(row(f"after ({calibration['method']}, cross-fitted by fold)",
                        calibration["after"]))
    cal_section = make_section(
        "Calibration before and after", [calibration["note"] + ".", FLOOR_TEXT],
        [{"title": "Expected calibration error and Brier score",
          "columns": ["", "ECE [95% CI]", FLOOR_COLUMN, "Brier [95% CI]"], "rows": rows}],
        section_id="calibration-after")
    columns = ["abstain on the", "coverage", "n", "accuracy"] + (["roc_auc"] if preds.binary else [])
    table_rows = [{"abstain on the": name, **{k: (round(v, 3) if isinstance(v, float) else v)
                                             for k, v in row.items()}}
                  for name, rows_ in curves.items() for row in rows_]
    selective = make_section(
        "Selective prediction (risk-coverage)",
        ["The model abstains on its least confident images (binary: probability nearest the "
         "threshold; multi-class: lowest top-class probability)"
         + (", or on its most out-of-domain ones (highest domain_score)"
            if "most out of domain" in curves else "")
         + "; the table gives the accuracy of the images it still answers."],
        [{"title": "Risk-coverage", "columns": columns, "rows": table_rows}],
        section_id="risk-coverage")
    return {"calibration_comparison": calibration, "risk_coverage": curves}, [cal_section, selective]
