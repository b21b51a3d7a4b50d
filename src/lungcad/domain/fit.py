"""Add the domain reference and the calibration to a model directory, from its experiment.

:func:`add_domain_and_calibration` is what ``lungcad experiment ... --final`` runs on the model
it writes, and what ``lungcad calibrate MODEL_DIR --experiment DIR`` runs on an existing model
directory (the bundled models were upgraded this way, without retraining their weights):

- ``domain.npz`` + model.json ``domain``: the reference of the descriptors of every image the
  model trained on (:mod:`lungcad.domain.reference`); its threshold is the 99th percentile of
  the images' out-of-fold scores, the folds being the experiment's own;
- model.json ``calibration`` (classifiers and detectors, not segmenters): Platt (binary) or
  temperature (multi-class) scaling fitted on the experiment's pooled out-of-fold predictions
  (``oof_predictions.csv``: each image predicted by a fold model that never trained on it),
  never on the final model's own training images; ECE and Brier before and after, the "after"
  cross-fitted (each fold calibrated by a map fitted on the other folds). A binary model's
  threshold moves to the calibrated scale (the map is increasing: the same verdicts).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from lungcad.atomic import atomic_write
from lungcad.domain.descriptors import describe
from lungcad.domain.modality import canonical
from lungcad.domain.reference import DEFAULT_QUANTILE, DOMAIN_FILE, fit_with_threshold
from lungcad.errors import LungcadError
from lungcad.model_dir import SPEC_FILE

DESCRIPTOR_TEXT = ("image descriptors (16 px thumbnail, grey-level histogram and quantiles, "
                   "noise and sharpness) on the model's input grid; the score is the larger "
                   "of two Mahalanobis distances to the training images (probabilistic PCA "
                   "on all descriptors; full covariance on the 15 global statistics), each "
                   "divided by its own out-of-fold 99th percentile")


def _experiment(exp_dir: Path, finished: bool = True) -> tuple[dict, dict]:
    """meta.json and config of the experiment; ``finished``: its every fold must have run (the
    domain reference alone needs only its config and split)."""
    from lungcad.provenance import experiment_meta

    meta = experiment_meta(exp_dir, finished)
    return meta, meta["config"]


def _resolve(path: str, cwd: str | None) -> Path:
    p = Path(path)
    return p if p.is_absolute() or cwd is None else Path(cwd) / p


def training_images(meta: dict, config: dict):
    """(manifest, paths, fold of each path) of the experiment: every test part of every fold."""
    from lungcad.data.splits import load_fold

    cwd = meta.get("cwd")
    dataset, split = _resolve(config["dataset"], cwd), _resolve(config["split"], cwd)
    paths, folds, manifest = [], [], None
    for k in range(int(meta["split"]["n_folds"])):
        view = load_fold(manifest or dataset, split, config["task"], k)
        manifest = view.manifest
        paths += list(view.test)
        folds += [k] * len(view.test)
    return manifest, paths, np.asarray(folds)


def fit_domain(spec: dict, meta: dict, config: dict, quantile: float,
               log: Callable[[str], None]) -> tuple[dict, object]:
    from lungcad.io import load_image

    manifest, paths, folds = training_images(meta, config)
    size = int(spec["preprocessing"]["size"])
    log(f"domain: descriptors of {len(paths)} training image(s) at {size} px")
    x = np.stack([describe(load_image(manifest.image_path(p)).array, size) for p in paths])
    reference, oof = fit_with_threshold(x, folds, size, quantile)
    summary = {"modality": canonical(spec.get("modality")), "file": DOMAIN_FILE,
               "method": DESCRIPTOR_TEXT, "n_train": len(paths),
               "threshold": reference.threshold, "quantile": quantile,
               "threshold_rule": (f"{quantile:.0%} quantile of the out-of-fold scores of the "
                                  f"{len(paths)} training images ({len(np.unique(folds))} folds "
                                  "of the experiment's split)"),
               "out_of_fold_flagged": float(np.mean(oof > reference.threshold))}
    return summary, reference


def fit_model_calibration(spec: dict, exp_dir: Path) -> dict:
    """The calibration entry of model.json, fitted on ``exp_dir/oof_predictions.csv`` only."""
    from lungcad.calibration_map import apply_calibration
    from lungcad.evaluation.calibration import (CALIBRATION_NOTE,
                                                calibration_scores, crossfit_calibration,
                                                fit_calibration)
    from lungcad.evaluation.predictions import read_predictions, validate_predictions

    oof_file = exp_dir / "oof_predictions.csv"
    if not oof_file.is_file():
        raise LungcadError(f"{exp_dir}: no oof_predictions.csv to calibrate on")
    preds = validate_predictions(read_predictions(oof_file), require_labels=True)
    if tuple(preds.classes) != tuple(spec["classes"]):
        raise LungcadError(f"{oof_file}: classes {list(preds.classes)} are not the model's "
                           f"{spec['classes']}")
    if "fold" not in preds.frame:
        raise LungcadError(f"{oof_file}: no fold column; out-of-fold predictions name their fold")
    folds = preds.frame["fold"].to_numpy()
    calibration = fit_calibration(preds.probs, preds.y)
    before = calibration_scores(preds.probs, preds.y)
    after = calibration_scores(crossfit_calibration(preds.probs, preds.y, folds), preds.y)
    in_sample = calibration_scores(apply_calibration(preds.probs, calibration), preds.y)
    calibration.update({
        "fitted_on": f"{CALIBRATION_NOTE}: {len(preds.y)} images, {oof_file.parent.name}/"
                     f"{oof_file.name}",
        "ece_before": before["ece"], "brier_before": before["brier"],
        "ece_after_out_of_fold": after["ece"], "brier_after_out_of_fold": after["brier"],
        "ece_after_in_sample": in_sample["ece"]})
    return calibration


def add_domain_and_calibration(model_dir: str | Path, exp_dir: str | Path, *,
                               quantile: float = DEFAULT_QUANTILE, calibrate: bool = True,
                               log: Callable[[str], None] = print) -> dict:
    """Write ``domain.npz`` and the ``domain`` / ``calibration`` entries of model.json into
    ``model_dir`` from the experiment in ``exp_dir``; return the new model.json dict."""
    from lungcad.evaluation.calibration import calibrated_threshold

    model_dir, exp_dir = Path(model_dir), Path(exp_dir).resolve()
    spec_file = model_dir / SPEC_FILE
    if not spec_file.is_file():
        raise LungcadError(f"{model_dir}: not a model directory (no {SPEC_FILE})")
    spec = json.loads(spec_file.read_text())
    from lungcad.data.tasks import TASKS

    task = TASKS.get(spec.get("task"))
    calibrate = calibrate and not (task is not None and task.segmentation)
    meta, config = _experiment(exp_dir, finished=calibrate)
    if config.get("task") != spec.get("task"):
        raise LungcadError(f"{exp_dir} cross-validated task {config.get('task')!r}, but "
                           f"{model_dir} is a {spec.get('task')!r} model")
    summary, reference = fit_domain(spec, meta, config, quantile, log)
    if calibrate:
        previous = spec.get("calibration") or {}
        raw = previous.get("threshold_uncalibrated", spec.get("threshold"))
        calibration = fit_model_calibration(spec, exp_dir)
        if len(spec["classes"]) == 2 and raw is not None:
            calibration["threshold_uncalibrated"] = raw
            spec["threshold"] = calibrated_threshold(raw, calibration)
            spec["threshold_rule"] = (spec.get("threshold_rule", "").split(" [calibrated")[0]
                                      + " [calibrated: the same cut on the uncalibrated "
                                      f"probability {raw:.4f}, mapped through the calibration]")
        spec["calibration"] = calibration
        log(f"calibration: {calibration['method']}, ECE {calibration['ece_before']:.3f} -> "
            f"{calibration['ece_after_out_of_fold']:.3f} out of fold")
    reference.save(model_dir / DOMAIN_FILE)
    spec["domain"] = summary
    atomic_write(spec_file, json.dumps(spec, indent=2).encode())
    card = model_dir / "MODEL_CARD.md"
    if card.is_file():
        atomic_write(card, replace_card_section(card.read_text(),
                                                card_section(spec, exp_dir.name)).encode())
    log(f"domain: threshold {summary['threshold']:.3g}; {summary['out_of_fold_flagged']:.1%} of "
        "the training images flagged out of fold")
    return spec


CARD_HEADING = "## Domain check and calibration"


def replace_card_section(card: str, section: str) -> str:
    """``card`` with its domain-and-calibration section replaced by ``section`` (appended where
    there is none); every other section, before or after it, is kept as it is."""
    if CARD_HEADING not in card:
        return card.rstrip() + "\n\n" + section
    head, rest = card.split(CARD_HEADING, 1)
    following = rest.find("\n## ")
    tail = "" if following < 0 else rest[following + 1:]
    return head + section.rstrip() + "\n" + ("\n" + tail if tail else "")


def card_section(spec: dict, experiment: str) -> str:
    """The model card's section on the domain check and the calibration."""
    domain = spec["domain"]
    lines = [CARD_HEADING, "",
             f"Input modality: **{domain['modality']}**. An input of the other modality (DICOM "
             "Modality tag, else the shipped radiograph-vs-CT classifier) is refused.", "",
             f"Out-of-domain check: {domain['method']}. Threshold {domain['threshold']:.3f}: "
             f"{domain['threshold_rule']}; {domain['out_of_fold_flagged']:.1%} of the training "
             "images are flagged out of fold. An input above it is still answered, marked "
             "`in_domain` false (\"outside what this model was trained on\").", ""]
    cal = spec.get("calibration")
    if cal:
        how = ("Platt scaling" if cal["method"] == "platt" else
               f"temperature scaling (T = {cal['temperature']:.3f})")
        lines += [f"Calibration: {how}, {cal['fitted_on']} (`{experiment}`). Expected "
                  f"calibration error {cal['ece_before']:.3f} before, "
                  f"{cal['ece_after_out_of_fold']:.3f} after (cross-fitted: each fold "
                  "calibrated by a map fitted on the other folds); Brier "
                  f"{cal['brier_before']:.3f} -> {cal['brier_after_out_of_fold']:.3f}. "
                  "The probabilities this model reports are the calibrated ones.", ""]
        if cal.get("threshold_uncalibrated") is not None and spec.get("threshold") is not None:
            lines += [f"Decision threshold on the calibrated scale: **{spec['threshold']:.4f}**, "
                      f"the same cut as {cal['threshold_uncalibrated']:.4f} on the uncalibrated "
                      "probability (the calibration is increasing: the same verdicts).", ""]
    else:
        lines += ["No calibration is stored: the probabilities are the network's own.", ""]
    return "\n".join(lines)
