"""``lungcad experiment``: every fold of the config's split, then the out-of-fold pool.

A fold whose ``test_predictions.csv`` exists is done and skipped; a fold whose model is trained
is not trained again; an interrupted training resumes from its last checkpoint.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from lungcad import provenance
from lungcad.jsrt_geometry import JSRT_COORD_COLUMNS
from lungcad.errors import LungcadError
from lungcad.experiment.config import ExperimentOptions
from lungcad.experiment.folds import TEST_PREDICTIONS, FoldOutcome, run_fold

EXPERIMENT_FORMAT = "lungcad-experiment/1"


@dataclass
class ExperimentResult:
    out_dir: Path
    folds: list[FoldOutcome]
    summary: dict
    trained_folds: list[int] = field(default_factory=list)


def check_same_experiment(out_dir: Path, config: dict, split_sha: str) -> dict:
    """The previous meta.json of ``out_dir``, refusing a different config or split file."""
    from lungcad.training.config_io import RESUMABLE_CHANGES

    meta_path = out_dir / "meta.json"
    if not meta_path.is_file():
        return {}
    old = json.loads(meta_path.read_text())
    if old.get("split", {}).get("sha256") != split_sha:
        raise LungcadError(f"{out_dir} holds an experiment on another split file (sha256 "
                           f"{str(old.get('split', {}).get('sha256'))[:12]}...); use another --out")
    old_config = old.get("config", {})
    keys = (set(old_config) | set(config)) - RESUMABLE_CHANGES
    differ = sorted(k for k in keys if old_config.get(k) != config.get(k))
    if differ:
        raise LungcadError(f"{out_dir} holds an experiment with a different config (differs in: "
                           f"{', '.join(differ)}); use another --out")
    return old


def has_nodule_coordinates(manifest) -> bool:
    table = manifest.table
    return all(c in table.columns for c in (*JSRT_COORD_COLUMNS, "size_mm")) and bool(
        table[list(JSRT_COORD_COLUMNS)].apply(pd.to_numeric, errors="coerce")
        .notna().all(axis=1).any())


def is_detector_config(config: dict) -> bool:
    """Whether the config trains a detector (``detector: true``: its folds mark nodules)."""
    return bool(config.get("detector"))


def fold_localisation(model, view, options: ExperimentOptions) -> dict:
    """Saliency maps of the fold's test images with a nodule position, scored against it; lung
    share from the reference lung masks, or the bundled lung segmenter's where a row has none."""
    from lungcad.explain.dataset import localise_dataset
    from lungcad.segmentation import installed_lung_model

    return localise_dataset(model, view.manifest, paths=list(view.test),
                            method=options.saliency_method, margin_mm=options.margin_mm,
                            lung_mask_model=installed_lung_model()).result


def run_experiment(config: dict, options: ExperimentOptions, out_dir: str | Path, *,
                   n_folds: int | None = None, n_bootstrap: int = 2000, seed: int = 0,
                   command: str | None = None, config_path: str | Path | None = None,
                   log: Callable[[str], None] = print) -> ExperimentResult:
    """Cross-validate ``config`` fold by fold into ``out_dir`` (see :mod:`lungcad.experiment`)."""
    from lungcad.data.splits import load_fold, load_split
    from lungcad.evaluation.predictions import read_predictions
    from lungcad.experiment.summary import summarise_experiment
    from lungcad.hashing import file_sha256
    from lungcad.inference import load_model
    from lungcad.prediction import write_predictions
    from lungcad.training.config_io import dump_config

    out_dir = Path(out_dir).resolve()
    config = copy.deepcopy(config)
    split_path = Path(config["split"])
    total = load_split(split_path).n_folds
    views = [load_fold(config["dataset"], split_path, config["task"], 0)]
    manifest, task = views[0].manifest, views[0].task
    n_run = total if n_folds is None else int(n_folds)
    if not 1 <= n_run <= total:
        raise LungcadError(f"--folds {n_run}: {split_path} has {total} fold(s); give 1 to {total}")
    views += [load_fold(manifest, split_path, task, k) for k in range(1, n_run)]
    split_sha = file_sha256(split_path)

    out_dir.mkdir(parents=True, exist_ok=True)
    old_meta = check_same_experiment(out_dir, config, split_sha)
    (out_dir / "config.yaml").write_text(dump_config(config))
    meta = {
        "format": EXPERIMENT_FORMAT, "status": "running",
        "command": command, "cwd": os.getcwd(),
        "config_path": str(Path(config_path).resolve()) if config_path else None,
        "config": config, "options": asdict(options),
        "split": {"path": str(split_path), "sha256": split_sha, "n_folds": total,
                  "folds_run": n_run},
        "dataset": {"path": str(manifest.root), "manifest_sha256": manifest.sha256(),
                    "n_images": len(manifest)},
        "task": task.name, "bootstrap": {"n_resamples": n_bootstrap, "seed": seed},
        "versions": provenance.versions(), "git_commit": provenance.git_commit(),
        "host": provenance.host(),
        "started": old_meta.get("started", provenance.now()),
        "sessions": old_meta.get("sessions", []) + [{"started": provenance.now(),
                                                     "command": command}],
    }
    provenance.write_json(out_dir / "meta.json", meta)

    localise = options.localisation and has_nodule_coordinates(manifest)
    warnings: list[str] = []
    if options.localisation and not localise:
        warnings.append("localisation was asked for, but the manifest has no nodule "
                        f"coordinates ({', '.join(JSRT_COORD_COLUMNS)}, size_mm): not scored")

    if task.segmentation:
        return _segmentation_experiment(config, views, out_dir, meta, total, n_bootstrap, seed,
                                        warnings, log)
    detector = is_detector_config(config)
    outcomes: list[FoldOutcome] = []
    localisations: list[dict] = []
    for view in views:
        fold_dir = out_dir / f"fold-{view.fold}"
        if detector:
            from lungcad.experiment.detection import TEST_FINDINGS, score_test_detections

            outcomes.append(run_fold(config, view, fold_dir, log, score_test=score_test_detections,
                                     also_written=(TEST_FINDINGS,)))
        else:
            outcomes.append(run_fold(config, view, fold_dir, log))
        if localise:
            loc_file = fold_dir / "localisation.json"
            if not loc_file.is_file():
                log(f"fold {view.fold}: localisation ({options.saliency_method}) on its test "
                    "images")
                provenance.write_json(loc_file, fold_localisation(
                    load_model(fold_dir / "model"), view, options))
            localisations.append(json.loads(loc_file.read_text()))

    from lungcad.csvsafe import restore_formulas

    frames = [restore_formulas(pd.read_csv(o.directory / TEST_PREDICTIONS, dtype={"path": str}))
              for o in outcomes]
    oof = pd.concat(frames, ignore_index=True)
    repeated = oof["path"][oof["path"].duplicated()].tolist()
    if repeated:
        raise LungcadError(f"{len(repeated)} image(s) are in the test part of more than one fold, "
                           f"e.g. {repeated[:2]}; the split file is inconsistent")
    oof_path = write_predictions(oof, out_dir / "oof_predictions.csv")
    froc = None
    if detector:
        from lungcad.experiment.detection import summarise_findings

        log("FROC of the out-of-fold marks")
        froc = summarise_findings([o.directory for o in outcomes], oof["path"].tolist(),
                                  manifest, out_dir, n_bootstrap, seed)
        if "dataset_label" in oof.columns:
            from lungcad.experiment.detection import image_level_summary

            froc["image_level"] = image_level_summary(oof, n_bootstrap, seed)
    summary = summarise_experiment(read_predictions(oof_path), outcomes, frames, task,
                                   localisations if localise else None, out_dir, total,
                                   n_bootstrap, seed, warnings, froc=froc)
    return _finished(out_dir, meta, outcomes, summary)


def _finished(out_dir: Path, meta: dict, outcomes: list[FoldOutcome],
              summary: dict) -> ExperimentResult:
    meta.update({"status": "finished", "finished": provenance.now()})
    meta["sessions"][-1].update({"finished": meta["finished"],
                                 "trained_folds": [o.fold for o in outcomes if o.trained_now]})
    provenance.write_json(out_dir / "meta.json", meta)
    return ExperimentResult(out_dir, outcomes, summary,
                            [o.fold for o in outcomes if o.trained_now])


def _segmentation_experiment(config: dict, views: list, out_dir: Path, meta: dict, total: int,
                             n_bootstrap: int, seed: int, warnings: list[str],
                             log: Callable[[str], None]) -> ExperimentResult:
    from lungcad.experiment.segmentation import (run_segmentation_fold,
                                                 summarise_segmentation_experiment)

    outcomes = [run_segmentation_fold(config, view, out_dir / f"fold-{view.fold}", log)
                for view in views]
    summary = summarise_segmentation_experiment(outcomes, views[0].manifest, views[0].task,
                                                out_dir, total, n_bootstrap, seed, warnings)
    return _finished(out_dir, meta, outcomes, summary)
