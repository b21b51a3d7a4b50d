"""External validation of a detector experiment: every fold model, and the final model where
there is one, marks every image of a dataset that no model of the experiment trained on; the
marks are scored against that set's lesions (FROC with NODE21's figures) and the table goes
beside the cross-validated summary: ``DIR/external-<name>.md`` and ``.json``, with each model's
predictions, findings and froc.json under ``DIR/external/<name>/<model>/``.

The external set must share no image with the experiment's dataset (same file or same bytes):
that is checked, not assumed. A model already scored (its froc.json written) is not scored again.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lungcad.errors import LungcadError

EXTERNAL_DIR = "external"
RATES = (0.125, 0.25, 0.5)


def _image_identity(manifest) -> dict[str, str]:
    """path -> sha256 of the image's bytes (links followed)."""
    from lungcad.hashing import file_sha256

    return {p: file_sha256(manifest.image_path(p)) for p in manifest.paths}


def check_never_trained_on(external, training) -> None:
    """Refuse an external set that shares an image (by content) with the training dataset."""
    seen = {h: p for p, h in _image_identity(training).items()}
    shared = [(p, seen[h]) for p, h in _image_identity(external).items() if h in seen]
    if shared:
        raise LungcadError(f"{external.root} is not external: {len(shared)} of its image(s) are "
                           f"images of the training dataset {training.root}, e.g. "
                           f"{shared[0][0]} = {shared[0][1]}")


def experiment_models(exp_dir: Path) -> list[tuple[str, Path]]:
    """(name, model dir) of every trained fold, in fold order, then the final model."""
    folds = sorted((int(d.name.split("-")[1]), d / "model") for d in exp_dir.glob("fold-*")
                   if d.name.split("-")[1].isdigit() and (d / "model" / "model.json").is_file())
    models = [(f"fold-{k}", path) for k, path in folds]
    if (exp_dir / "final" / "model" / "model.json").is_file():
        models.append(("final", exp_dir / "final" / "model"))
    if not models:
        raise LungcadError(f"{exp_dir} holds no trained model yet; run the experiment first")
    return models


def _score_model(model_dir: Path, manifest, truth, out: Path, n_bootstrap: int,
                 seed: int) -> dict:
    from lungcad.detection.batch import marks_images, write_findings
    from lungcad.evaluation.froc import froc_analysis
    from lungcad.inference import load_model
    from lungcad.prediction import PredictionInput, predict_input, write_predictions
    from lungcad.provenance import write_json

    model = load_model(model_dir)
    if not marks_images(model):
        raise LungcadError(f"--external scores marks: {model_dir} is not a detector with cell maps "
                           "(a nodule detector)")
    rows = manifest.table
    inp = PredictionInput(files=[manifest.image_path(p) for p in rows["path"]],
                          keys=rows["path"].tolist(),
                          metadata=rows.drop(columns=["path"]).rename(
                              columns={"label": "dataset_label"}))
    result = predict_input(model, inp, progress=False)
    if result.failures:
        raise LungcadError(f"{model_dir}: {len(result.failures)} external image(s) could not be "
                           f"marked, e.g. {result.failures[0][0]}: {result.failures[0][1]}")
    out.mkdir(parents=True, exist_ok=True)
    write_predictions(result.table, out / "predictions.csv")
    write_findings(result.findings, out / "findings.csv")
    froc = froc_analysis(result.findings, truth, n_bootstrap=n_bootstrap, seed=seed)
    froc["inputs"] = {"model": str(model_dir), "dataset": str(manifest.root)}
    write_json(out / "froc.json", froc)
    return froc


def score_external(exp_dir: str | Path, dataset: str | Path, training_dataset: str | Path,
                   n_bootstrap: int = 2000, seed: int = 0, log=print) -> dict:
    """Score every model of the experiment in ``exp_dir`` on ``dataset`` (module docstring)."""
    import json

    from lungcad.data.manifest import Manifest
    from lungcad.evaluation.lesion_truth import truth_from_lesions
    from lungcad.provenance import write_json

    exp_dir = Path(exp_dir)
    external = Manifest.load(dataset)
    check_never_trained_on(external, Manifest.load(training_dataset))
    truth = truth_from_lesions(external)
    name = Path(external.root).resolve().name
    rows, frocs = [], {}
    for model_name, model_dir in experiment_models(exp_dir):
        out = exp_dir / EXTERNAL_DIR / name / model_name
        if (out / "froc.json").is_file():
            froc = json.loads((out / "froc.json").read_text())
        else:
            log(f"external {name}: {model_name} marks {len(external)} image(s)")
            froc = _score_model(model_dir, external, truth, out, n_bootstrap, seed)
        frocs[model_name] = froc
        at = {r["fp_per_image"]: r["sensitivity"] for r in froc["sensitivity_at"]}
        rows.append({"model": model_name, **{f"sensitivity@{r:g}": at[r] for r in RATES},
                     "cpm": froc["cpm"]["value"],
                     "image_auc": froc["image_level_auc"]["value"],
                     "image_auc_ci": [froc["image_level_auc"]["ci_low"],
                                      froc["image_level_auc"]["ci_high"]]})
    result = {"dataset": str(external.root), "name": name, "n_images": len(external),
              "n_lesions": int(len(truth.nodules)),
              "lesion_labels": sorted(set(truth.nodules["label"])),
              "notes": list(truth.notes), "margin_mm": next(iter(frocs.values()))["margin_mm"],
              "models": rows}
    write_json(exp_dir / f"external-{name}.json", result)
    (exp_dir / f"external-{name}.md").write_text(external_markdown(result))
    return result


def external_markdown(result: dict) -> str:
    """The external table as Markdown."""

    def fmt(value) -> str:
        return "n/a" if value is None or pd.isna(value) else f"{value:.3f}"

    lines = [f"# External validation on {result['name']}", "",
             f"{result['n_images']} images never used for training, {result['n_lesions']} "
             f"lesions ({', '.join(result['lesion_labels']) or 'none'}); a mark hits within the "
             f"lesion's radius or box + {result['margin_mm']:g} mm. "
             + " ".join(f"{n[0].upper()}{n[1:]}." for n in result["notes"]), "",
             "| model | sens @0.125 FP/img | @0.25 | @0.5 | CPM | image AUC [95% CI] |",
             "|---|---|---|---|---|---|"]
    for r in result["models"]:
        low, high = r["image_auc_ci"]
        ci = f" [{low:.3f}, {high:.3f}]" if low is not None else ""
        lines.append(f"| {r['model']} | {fmt(r['sensitivity@0.125'])} | "
                     f"{fmt(r['sensitivity@0.25'])} | {fmt(r['sensitivity@0.5'])} | "
                     f"{fmt(r['cpm'])} | {fmt(r['image_auc'])}{ci} |")
    lines += ["", "Image AUC: an image with a lesion against one without, scored by its strongest "
              "mark (NODE21's image-level figure). Fold models each trained on their fold's "
              "training part; `final` on every image of the experiment's dataset.", ""]
    return "\n".join(lines)
