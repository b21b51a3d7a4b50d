"""The model to ship after a cross-validated experiment (``lungcad experiment ... --final``).

The recipe is the experiment's config, unchanged; the final model trains on every labelled
image of the split (all folds). Its decision threshold comes from the same rule applied to the
experiment's pooled out-of-fold predictions (each made by a model that never saw the image), so
the threshold is fixed by cross-validation and not by the images it was trained on. The model
card carries the pooled cross-validated metrics with their intervals and the commands that
reproduce the model. Written to ``DIR/final/model`` with ``weights_base`` "pretrained" when the
architecture starts from pretrained weights (only the changed tensors are stored).
It then gets its domain reference (``domain.npz``, threshold from out-of-fold scores) and its
calibration (fitted on the pooled out-of-fold predictions): :mod:`lungcad.domain.fit`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Callable

from lungcad import provenance
from lungcad.errors import LungcadError

DATASET_NOTES = {
    "jsrt": ("JSRT database (Shiraishi et al., AJR 2000;174:71-74): 198 chest radiographs, one "
             "per patient, from Japanese institutions; distributed by the Japanese Society of "
             "Radiological Technology to registered users for research and education. The "
             "shared copies are 512 px 8-bit PNGs, most with blanked-label rectangles."),
    "iqothnccd": ("IQ-OTH/NCCD lung CT slices (Alyasriy and AL-Huseiny, Mendeley Data, "
                  "doi:10.17632/bhmdr45bh2): 1,097 JPEG slices from 110 cases at one Iraqi "
                  "centre; no patient ids. See the dataset's page for its terms."),
    "chest_ct_kaggle": ("Kaggle \"Chest CT-Scan images Dataset\": 685 PNG slices (published "
                        "train and valid splits; the test split is held back), four classes. "
                        "Origin, scanners and patient ids are undocumented; many files are "
                        "pixel-identical copies. See the Kaggle page for its terms."),
}
LIMITS = {
    "jsrt-lungs": ["198 images: digitised film from one Japanese centre (JSRT), 1990s, PA "
                   "view only; not validated on modern digital radiographs, AP or lateral "
                   "views, children, or other populations and scanners.",
                   "Reference masks are one annotator's outline per image; the model learns "
                   "their convention (the lung fields behind the heart and below the "
                   "diaphragm are not included).",
                   "An image where no plausible pair of lungs is found gets a warning, not a "
                   "silent mask; that check looks at the mask's shape, and at the Modality tag "
                   "of a DICOM file (CT is refused with a warning). A CT slice saved as PNG can "
                   "pass the shape check: its two lungs look like a pair."],
    "jsrt": ["198 images: every interval in this card is wide.",
             "One population (Japan, 1990s film digitised); not validated on modern digital "
             "radiographs, other populations or other scanners.",
             "Most JSRT PNGs carry black blanked-label rectangles: a model can learn such "
             "marks instead of anatomy; heatmaps help to check.",
             "Trained and scored on images that all show a nodule or were picked as normal "
             "controls: it is not a screening model."],
    "iqothnccd": ["No patient ids: folds group exact and perceptual-hash near-duplicates only, "
                  "so slices of one patient can fall on both sides; the figures are an upper "
                  "bound, and their intervals (resampling images, not patients) too narrow.",
                  "One centre, one scanner protocol; JPEG slices, not DICOM.",
                  "No lesion positions: where its heatmaps point cannot be scored."],
    "chest_ct_kaggle": ["Undocumented origin and no patient ids; duplicates grouped by pixel "
                        "hash and perceptual hash, but the scores are an upper bound.",
                        "Slices of very different sizes and sources; not DICOM.",
                        "No lesion positions: where its heatmaps point cannot be scored."],
}


def final_fit(config: dict, options, exp_dir: str | Path, name: str | None = None,
              command: str | None = None, log: Callable[[str], None] = print) -> Path:
    """Train ``config`` on every labelled image of its split; threshold from the experiment's
    pooled out-of-fold predictions; write ``exp_dir/final/model`` with its model card.
    ``command``: the command line that ran this (for the card's "Reproduce" section)."""
    from lungcad.data.splits import load_fold, whole_dataset
    from lungcad.evaluation.predictions import read_predictions
    from lungcad.evaluation.thresholds import ValidationPredictions, decide_threshold
    from lungcad.model_dir import save_model_dir
    from lungcad.training.trainers import get_trainer

    exp_dir = Path(exp_dir).resolve()
    trainer = get_trainer(config["trainer"])
    if trainer.selects_on_validation:
        raise LungcadError(f"--final needs a trainer that does not pick its checkpoint on "
                           f"validation images (linear_probe, nodule_heatmap); {trainer.name} "
                           "does, and a final model has no images left to validate on")
    meta = provenance.experiment_meta(exp_dir)
    if _comparable(meta["config"]) != _comparable(config):
        raise LungcadError(f"{exp_dir} was cross-validated with another config; --final trains "
                           "exactly the recipe that was cross-validated")
    fold0 = load_fold(config["dataset"], config["split"], config["task"], 0)
    manifest, task = fold0.manifest, fold0.task
    view = whole_dataset(manifest, task, sorted(set(fold0.train) | set(fold0.val)
                                                | set(fold0.test)))

    if task.segmentation:  # a pixel threshold, fixed: nothing to decide
        from lungcad.segmentation.masks import PIXEL_RULE, PIXEL_THRESHOLD

        threshold, rule = PIXEL_THRESHOLD, PIXEL_RULE
    else:
        oof_file = exp_dir / "oof_predictions.csv"
        oof = ValidationPredictions.out_of_fold(read_predictions(oof_file), task.classes,
                                                str(oof_file))
        choice = decide_threshold(oof, str(config.get("threshold", "youden")))
        threshold = choice.value
        rule = (f"{choice.rule} on the pooled out-of-fold predictions of the "
                f"{meta['split']['n_folds']}-fold cross-validation ({len(oof.paths)} images)"
                if choice.value is not None else choice.description)

    work = exp_dir / "final"
    shutil.rmtree(work / "fit", ignore_errors=True)  # an interrupted earlier fit
    log(f"final model: training ({trainer.name}) on all {len(view.train)} images into {work}")
    (work / "fit").mkdir(parents=True, exist_ok=True)
    trained = trainer.fit(view, work / "fit", dict(config), resume=False, log=log)
    report = json.loads((exp_dir / "report" / "report.json").read_text())
    base = _weights_base(trained.spec)
    args = dict(trained.spec.architecture_args)
    if base == "pretrained":
        args["pretrained"] = True
    spec = replace(trained.spec, name=name or exp_dir.name, threshold=threshold,
                   threshold_rule=rule, weights_base=base, architecture_args=args,
                   metrics={"n_train": len(view.train),
                            "cross_validation": _cv_metrics(report, meta, manifest)})
    summary = json.loads((exp_dir / "summary.json").read_text())
    if summary.get("localisation"):
        spec.metrics["localisation_out_of_fold"] = _localisation(summary["localisation"])
    if spec.detection is not None:  # a detector: its age/sex model and FROC, out of fold
        from lungcad.experiment.detection import final_detection

        spec = final_detection(spec, exp_dir)
    card = model_card(spec, meta, manifest, command, exp_dir)
    # an earlier final model is replaced only once the new one is complete
    staged = save_model_dir(work / "model.new", trained.network, spec, card)
    from lungcad.domain.training_data import record_view

    record_view(staged, view)  # what it trained on: predict and evaluate say so
    shutil.rmtree(work / "model", ignore_errors=True)
    out = staged.rename(work / "model")
    shutil.rmtree(work / "fit")
    # what its training inputs look like, and the calibration: out of fold (lungcad.domain.fit)
    from lungcad.domain.fit import add_domain_and_calibration

    add_domain_and_calibration(out, exp_dir, log=log)
    return out


def _detection_text(spec) -> str:
    from lungcad.experiment.detection import detection_card_text

    return detection_card_text(spec.metrics.get("detection_out_of_fold"))


def _comparable(config: dict) -> dict:
    """The recipe without keys that do not change the model (threads)."""
    return {k: v for k, v in config.items() if k not in ("torch_threads", "num_workers", "name")}


def _weights_base(spec) -> str:
    """"pretrained" where the architecture starts from pretrained weights (store only changes)."""
    from lungcad.models import model_info

    return "pretrained" if "pretrained" in model_info(spec.architecture).defaults else "none"


CARD_METRICS = ("roc_auc", "macro_roc_auc", "accuracy", "balanced_accuracy", "sensitivity",
                "specificity", "macro_f1", "log_loss", "brier", "dice", "iou", "hd95_mm")


def _cv_metrics(report: dict, meta: dict, manifest) -> dict:
    metrics = report["metrics"]
    pooled = {k: {f: metrics[k][f] for f in ("value", "ci_low", "ci_high")}
              for k in CARD_METRICS if k in metrics and isinstance(metrics[k], dict)
              and "value" in metrics[k]}
    return {"protocol": _protocol(meta, Path(str(manifest.root)).name), "pooled_out_of_fold": pooled,
            "bootstrap": report.get("bootstrap", {})}


GROUPING = {
    "jsrt": "one image per patient, so the folds are patient-disjoint",
    "iqothnccd": "grouped by exact and perceptual-hash near-duplicate images (no patient ids)",
    "chest_ct_kaggle": "grouped by pixel-identical and perceptual-hash near-duplicate images "
                       "(no patient ids)",
}


def _protocol(meta: dict, dataset: str) -> str:
    from lungcad.data.tasks import get_task

    split = meta["split"]
    grouping = GROUPING.get(dataset, "grouped by exact and near-duplicate images")
    scored = ("the pixel threshold fixed at 0.5; each out-of-fold mask scored against its "
              "reference at the reference's size (Dice, IoU, 95th-percentile Hausdorff distance "
              "in mm)" if get_task(meta["task"]).segmentation else
              "each fold's threshold chosen on its own validation part; pooled out-of-fold "
              "predictions")
    return (f"{split['n_folds']}-fold cross-validation on `splits/{Path(split['path']).name}` "
            f"({grouping}); {scored}")


def _localisation(pooled: dict) -> dict:
    """The experiment's out-of-fold heatmap scores against the known nodule positions."""
    overall = pooled["overall"]
    return {"n_nodule_images": overall["n"], "peak_hits": overall["peak_hit"]["hits"],
            "peak_hit_rate": overall["peak_hit"]["rate"], "peak_hit_ci95": overall["peak_hit"]["ci95"],
            "lung_share_mean": overall["lung_share_mean"],
            "chance_peak_hit": overall["chance_peak_hit_mean"],
            "margin_mm": pooled["settings"]["margin_mm"]}


def _localisation_text(loc: dict | None) -> str:
    if not loc:
        return ""
    lo, hi = loc["peak_hit_ci95"]
    share = loc["lung_share_mean"]
    lungs = ("" if share is None else f"; {share:.2f} of the saliency lies in the lung fields "
             "(a flat map: about 0.31)")
    return f"""## Where it looks

Out of fold, each nodule image's Grad-CAM map was scored by the fold model that never trained
on it: the map's peak lay within the nodule's radius plus {loc['margin_mm']:g} mm of its centre in
{loc['peak_hits']} of {loc['n_nodule_images']} images, {loc['peak_hit_rate']:.2f} [{lo:.2f}, {hi:.2f}]
(a random point in the lungs: {loc['chance_peak_hit']:.3f}){lungs}.

"""


def _relative(path: Path, cwd: str | None) -> str:
    try:
        return str(path.relative_to(Path(cwd))) if cwd else str(path)
    except ValueError:
        return str(path)


def _fmt_metric(entry: dict) -> str:
    lo, hi = entry.get("ci_low"), entry.get("ci_high")
    interval = "" if lo is None or hi is None else f" [{lo:.3f}, {hi:.3f}]"
    return f"{entry['value']:.3f}{interval}"


def model_card(spec, meta: dict, manifest, command: str | None, exp_dir: Path) -> str:
    dataset = Path(str(manifest.root)).name
    cv = spec.metrics["cross_validation"]
    boot = cv.get("bootstrap", {})
    rows = "\n".join(f"| {k} | {_fmt_metric(v)} |" for k, v in cv["pooled_out_of_fold"].items())
    cv_command = meta.get("command") or "lungcad experiment CONFIG --out DIR"
    if spec.threshold is None:
        decision = "the most probable class (multi-class)"
    else:
        decision = (f"`{spec.classes[1]}` when its probability is at least "
                    f"**{spec.threshold:.4f}**: {spec.threshold_rule}")
    limits = "\n".join(f"- {line}" for line in LIMITS.get(spec.task, LIMITS.get(dataset, [])))
    return f"""# {spec.name}

**Research software, not a medical device.** Not for diagnosis, screening or any clinical
decision. Its output is a research measurement on one image.

## Intended use

Research on {spec.modality} images: task `{spec.task}`, classes {', '.join(f'`{c}`' for c in spec.classes)}.
Input: one grayscale image (PNG, JPEG, DICOM, JSRT raw ...), resized to {spec.preprocessing.size} px.

## Model

`{spec.architecture}` ({json.dumps(spec.architecture_args)}), trained with lungcad
{spec.to_dict()['lungcad_version']} on all {spec.metrics['n_train']} labelled images of the
dataset with the recipe that cross-validation scored (below).

Decision: {decision}.

## Training data

{DATASET_NOTES.get(dataset, f'`{dataset}`')}

## Cross-validated performance

{cv['protocol']}. 95% intervals: {boot.get('n_resamples', '?')} bootstrap resamples of
images (seed {boot.get('seed', 0)}; {boot.get('method', 'BCa')}). These figures describe
the recipe on this dataset, not this exact model, and say nothing about patients elsewhere.

| metric (pooled out of fold) | value [95% CI] |
|---|---|
{rows}

{_localisation_text(spec.metrics.get("localisation_out_of_fold"))}{_detection_text(spec)}## Known limits

{limits}
- The held-back part of the dataset has not scored this model yet.

## Reproduce

```
{cv_command}
{command or cv_command + ' --final'}
cp -r {_relative(exp_dir, meta.get('cwd'))}/final/model src/lungcad/bundled/{spec.name}
```
"""
