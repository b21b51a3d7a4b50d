"""Cross-validation of a nodule detector: each fold's model marks its own held-out test images.

A detector is also a binary classifier (its image score is its strongest cell), so a fold's
``test_predictions.csv`` is written as for any classifier; besides it, ``test_findings.csv``
holds the fold's marks (one row a mark, :data:`lungcad.findings.FINDINGS_COLUMNS`). Both come
from one pass over each test image. After the folds, ``oof_findings.csv`` pools the marks and
``froc/`` holds their FROC analysis against the manifest's nodules (``froc.json``, report).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from lungcad.errors import LungcadError

TEST_FINDINGS = "test_findings.csv"
NO_LESION_LABELS = ("non_nodule", "no_lesion", "normal")  # image labels without a lesion
OOF_FINDINGS = "oof_findings.csv"
FROC_DIR = "froc"


def score_test_detections(model, view, fold_dir: Path) -> pd.DataFrame:
    """The fold's test predictions table; its marks go to ``fold_dir/test_findings.csv``."""
    from lungcad.detection.batch import marks_images, write_findings
    from lungcad.prediction import dataset_input, predict_input

    if not marks_images(model):
        raise LungcadError(f"{model.spec.name} does not mark nodules (a detector with cell maps "
                           "does)")
    result = predict_input(model, dataset_input(view.manifest, view.task, list(view.test),
                                                fold=view.fold), progress=False)
    if result.failures:
        raise LungcadError(f"fold {view.fold}: {len(result.failures)} test image(s) could not "
                           f"be marked, e.g. {result.failures[0][1]}")
    findings = result.findings.copy()
    findings["fold"] = view.fold
    write_findings(findings, fold_dir / TEST_FINDINGS)
    return result.table


def summarise_findings(fold_dirs: Sequence[Path], images: Sequence[str], manifest,
                       out_dir: Path, n_bootstrap: int, seed: int) -> dict:
    """Pool the folds' marks into oof_findings.csv and score them (FROC) into ``froc/``, on
    the out-of-fold ``images`` (every test image, with marks or without)."""
    from lungcad.csvsafe import restore_formulas
    from lungcad.detection.batch import write_findings
    from lungcad.evaluation.froc import froc_analysis, froc_section
    from lungcad.evaluation.lesion_truth import truth_from_lesions
    from lungcad.evaluation.render import write_report
    from lungcad.evaluation.report import sections_report
    from lungcad.provenance import write_json

    frames = [restore_formulas(pd.read_csv(d / TEST_FINDINGS, dtype={"path": str}))
              for d in fold_dirs]
    pooled = pd.concat(frames, ignore_index=True)
    write_findings(pooled, out_dir / OOF_FINDINGS)
    truth = truth_from_lesions(manifest, list(images))
    froc = froc_analysis(pooled, truth, n_bootstrap=n_bootstrap, seed=seed)
    froc["inputs"] = {"findings": str(out_dir / OOF_FINDINGS), "dataset": str(manifest.root),
                      "images_from": "out-of-fold test parts"}
    write_json(out_dir / FROC_DIR / "froc.json", froc)
    write_report(sections_report({"findings": froc["inputs"]}, [froc_section(froc)]),
                 out_dir / FROC_DIR)
    return froc


def _cross_fitted(frame: pd.DataFrame, use_image: bool):
    """P(malignant) from (image-only score,) age and sex: the rows of fold k scored by a
    logistic regression fitted on the other folds' out-of-fold rows only."""
    import numpy as np

    from lungcad.detection.clinical import ClinicalModel, patient_arrays

    out = np.full(len(frame), np.nan)
    age, male = patient_arrays(frame["age"], frame["sex"])
    score = frame["malignancy"].to_numpy(float) if use_image else np.full(len(frame), 0.5)
    y = (frame["dataset_label"] == "malignant").astype(int).to_numpy()
    for k in sorted(frame["fold"].unique()):
        test = (frame["fold"] == k).to_numpy()
        model = ClinicalModel.fit(score[~test], age[~test], male[~test], y[~test])
        out[test] = model.predict(score[test], age[test], male[test])
    return out


def image_level_summary(oof: pd.DataFrame, n_bootstrap: int, seed: int) -> dict:
    """Out-of-fold image AUCs of a detector experiment (with 95% bootstrap intervals over
    images): nodule vs none from the image score and from the strongest mark inside the lungs;
    malignant vs rest from the image alone, with age and sex added (cross-fitted by fold), and
    from age and sex alone (a reference). Needs the manifest's label, age and sex columns."""
    import numpy as np

    from lungcad.evaluation.bootstrap import bootstrap_intervals
    from lungcad.evaluation.metrics import roc_auc

    def aucs(y: np.ndarray, scores: dict) -> dict:
        def statistic(idx: np.ndarray) -> dict:
            return {name: roc_auc(y[idx], s[idx]) for name, s in scores.items()}

        if y.min() == y.max():  # one class only: no AUC
            return {name: {"value": None, "ci_low": None, "ci_high": None} for name in scores}
        intervals = bootstrap_intervals(len(y), statistic, n_bootstrap, seed)
        return {name: {"value": float(roc_auc(y, s)), **intervals[name].as_dict()}
                for name, s in scores.items()}

    labels = oof["dataset_label"].astype(str)
    positive = [c for c in oof.columns if str(c).startswith("prob_")][-1]
    out = {"nodule_vs_none": aucs((~labels.isin(NO_LESION_LABELS)).astype(int).to_numpy(), {
        "image score (strongest cell)": oof[positive].to_numpy(float),
        "strongest mark inside the lungs": oof["top_mark_score"].to_numpy(float)})}
    if not (labels == "malignant").any():  # a lesion table without malignancy labels
        return out
    scores = {"image only": oof["malignancy"].to_numpy(float)}
    # cross-fitting needs other folds to fit on: not in a run of one fold (--folds 1)
    if {"age", "sex", "fold"} <= set(oof.columns) and oof["fold"].nunique() > 1:
        scores["image + age + sex (cross-fitted by fold)"] = _cross_fitted(oof, True)
        scores["age + sex only (reference)"] = _cross_fitted(oof, False)
    out["malignant_vs_rest"] = aucs((labels == "malignant").astype(int).to_numpy(), scores)
    return out


def final_detection(spec, exp_dir: Path):
    """A final detector's spec with its age/sex model (fitted on every out-of-fold image's
    image-only malignancy score: never on scores of images a fold's detector trained on) and
    its out-of-fold FROC and image AUCs (from the experiment's summary) for the card."""
    import json
    from dataclasses import replace

    from lungcad.detection.clinical import ClinicalModel, patient_arrays
    from lungcad.evaluation.predictions import read_predictions

    oof = read_predictions(exp_dir / "oof_predictions.csv", require_decisions=False)
    detection = dict(spec.detection or {})
    if {"malignancy", "age", "sex", "dataset_label"} <= set(oof.columns):
        age, male = patient_arrays(oof["age"], oof["sex"])
        detection["clinical"] = ClinicalModel.fit(
            oof["malignancy"], age, male,
            (oof["dataset_label"] == "malignant").astype(int)).to_dict()
    froc = json.loads((exp_dir / "summary.json").read_text()).get("froc")
    metrics = dict(spec.metrics)
    if froc:
        metrics["detection_out_of_fold"] = froc
    return replace(spec, detection=detection, metrics=metrics)


def detection_card_text(froc: dict | None) -> str:
    """The model card's section on marks (FROC) and image-level AUCs, out of fold."""
    if not froc:
        return ""

    def fmt(entry: dict) -> str:
        ci = (f" [{entry['ci_low']:.3f}, {entry['ci_high']:.3f}]"
              if entry.get("ci_low") is not None else "")
        value = entry.get("value", entry.get("sensitivity"))
        return "n/a" if value is None else f"{value:.3f}{ci}"

    rows = "\n".join(f"| at {r['fp_per_image']:g} per image | {fmt(r)} |"
                     for r in froc["sensitivity_at"])
    lines = [f"## Nodule marks (FROC, out of fold)\n\nA mark hits a nodule within its radius "
             f"+ {froc['margin_mm']:g} mm; {froc['n_nodules']} nodules on {froc['n_images']} "
             f"images. CPM (mean sensitivity at 1/8 to 8 false positives per image) "
             f"**{fmt(froc['cpm'])}**.\n\n| false positives per image | sensitivity [95% CI] |"
             f"\n|---|---|\n{rows}\n"]
    for question, values in (froc.get("image_level") or {}).items():
        lines.append(f"Image level, {question.replace('_', ' ')}: " + "; ".join(
            f"{name} AUC {fmt(v)}" for name, v in values.items()) + ".\n")
    lines.append("Malignancy is reported two ways: `malignancy` from the image alone, and "
                 "`malignancy_age_sex` adding age and sex (a logistic regression fitted on the "
                 "out-of-fold image scores); a missing age or sex takes the training mean, and "
                 "the output says so.\n\n")
    return "\n".join(lines)
