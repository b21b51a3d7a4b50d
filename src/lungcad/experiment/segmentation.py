"""Cross-validation of a segmentation task: each fold's model segments its held-out test images,
each mask is scored against its reference (Dice, IoU, HD95 in mm), and the pooled per-image
scores are summarised with bootstrap intervals and the worst cases' pictures."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from lungcad.errors import LungcadError
from lungcad.experiment.folds import FoldOutcome, run_fold

TEST_SEGMENTATION = "test_segmentation.csv"
OOF_SEGMENTATION = "oof_segmentation.csv"


def spacing_mm(task, side: int) -> float:
    """Pixel spacing of a task's images at ``side`` px (JSRT geometry for the JSRT tasks)."""
    from lungcad.jsrt_geometry import jsrt_mm_per_pixel

    if not task.name.startswith("jsrt"):
        raise LungcadError(f"task {task.name}: the pixel spacing of its images is unknown, so "
                           "the Hausdorff distance cannot be given in mm")
    return jsrt_mm_per_pixel(side)


def score_test_masks(model, view, fold_dir: Path) -> pd.DataFrame:
    """Segment the fold's test images (masks in ``fold_dir/masks/``) and score each mask
    against its reference: one row per image."""
    from lungcad.evaluation.segmentation import mask_metrics
    from lungcad.explain.files import output_stems
    from lungcad.explain.outline import mask_png
    from lungcad.segmentation.predict import segment
    from lungcad.io import load_image

    rows = view.manifest.rows_for(list(view.test))
    records = []
    (fold_dir / "masks").mkdir(exist_ok=True)
    for (_, row), stem in zip(rows.iterrows(), output_stems(list(rows["path"]))):
        image = load_image(view.manifest.image_path(row["path"])).array
        reference = load_image(view.manifest.image_path(row[view.task.mask_column])).array > 0.5
        if reference.shape != image.shape:
            raise LungcadError(f"{row[view.task.mask_column]}: mask of shape {reference.shape} "
                               f"for an image of shape {image.shape}")
        result = segment(model, image)
        (fold_dir / "masks" / f"{stem}.png").write_bytes(mask_png(result.mask))
        records.append({"path": row["path"], "fold": view.fold,
                        **mask_metrics(result.mask, reference,
                                       spacing_mm(view.task, image.shape[1])),
                        "plausible": result.plausible, "mask_file": f"masks/{stem}.png",
                        **result.measures})
    return pd.DataFrame(records)


def run_segmentation_fold(config: dict, view, fold_dir: Path,
                          log: Callable[[str], None] = print) -> FoldOutcome:
    """Train (unless trained), segment the test part, score each mask."""
    return run_fold(config, view, fold_dir, log, test_file=TEST_SEGMENTATION,
                    score_test=score_test_masks)


def summarise_segmentation_experiment(outcomes: Sequence[FoldOutcome], manifest, task,
                                      out_dir: Path, total_folds: int, n_bootstrap: int,
                                      seed: int, warnings: list[str]) -> dict:
    """oof_segmentation.csv, report/ (with the worst cases' pictures), summary.json and .md."""
    from lungcad.atomic import atomic_write
    from lungcad.evaluation.segmentation import (summarise_segmentation,
                                                 write_segmentation_report)
    from lungcad.io import load_image
    from lungcad.prediction import write_predictions
    from lungcad.provenance import write_json

    from lungcad.csvsafe import restore_formulas

    table = restore_formulas(pd.concat([pd.read_csv(o.directory / TEST_SEGMENTATION,
                                                    dtype={"path": str}) for o in outcomes],
                                       ignore_index=True))
    if table["path"].duplicated().any():
        raise LungcadError("an image is in the test part of more than one fold; the split file "
                           "is inconsistent")
    write_predictions(table, out_dir / OOF_SEGMENTATION)
    summary = summarise_segmentation(table, n_bootstrap, seed)
    pictures = []
    directory = {o.fold: o.directory for o in outcomes}
    rows = table.set_index("path")
    for worst in summary["worst"]:
        row = rows.loc[worst["path"]]
        image = load_image(manifest.image_path(worst["path"])).array
        reference = load_image(manifest.image_path(
            manifest.rows_for([worst["path"]])[task.mask_column].iloc[0])).array > 0.5
        predicted = load_image(directory[int(row["fold"])] / row["mask_file"]).array > 0.5
        caption = (f"{worst['path']} (fold {int(row['fold'])}): Dice {worst['dice']:.3f}, "
                   f"HD95 {row['hd95_mm']:.1f} mm; green: reference, red: predicted")
        pictures.append((caption, case_picture(image, predicted, reference,
                                               f"{Path(worst['path']).name}  "
                                               f"Dice {worst['dice']:.3f}")))
    write_segmentation_report(summary, pictures, out_dir / "report",
                              f"Cross-validation: {task.name}")
    summary.update({"format": "lungcad-experiment-summary/1", "task": task.name,
                    "kind": "segmentation", "folds_run": len(outcomes),
                    "folds_in_split": total_folds, "n_out_of_fold": int(len(table)),
                    "per_fold_mean_sd": {m: {**s, "n_folds": len(s["values"])}
                                         for m, s in summary.get("per_fold", {}).items()},
                    "pooled": {m: {k: r[k] for k in ("value", "ci_low", "ci_high")}
                               for m, r in summary["metrics"].items()},
                    "folds": [{"fold": o.fold, "directory": str(o.directory),
                               "n_train": o.n_train, "n_val": o.n_val, "n_test": o.n_test,
                               "trained_this_run": o.trained_now} for o in outcomes],
                    "warnings": warnings})
    write_json(out_dir / "summary.json", summary)
    atomic_write(out_dir / "summary.md", summary_markdown(summary).encode())
    return summary


def summary_markdown(summary: dict) -> str:
    def fmt(v, d=3):
        return "n/a" if v is None else f"{v:.{d}f}"

    lines = [f"# Cross-validation: {summary['task']}", "",
             "Research software, not a medical device.", "",
             f"{summary['folds_run']} of {summary['folds_in_split']} fold(s), "
             f"{summary['n_out_of_fold']} out-of-fold masks, each scored against its reference.",
             "", "| metric | mean [95% CI] | per-fold mean ± SD |", "|---|---|---|"]
    for name, r in summary["metrics"].items():
        fold = summary.get("per_fold", {}).get(name, {})
        lines.append(f"| {name} | {fmt(r['value'])} [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}] "
                     f"| {fmt(fold.get('mean'))} ± {fmt(fold.get('sd'))} |")
    lines += ["", "Worst images by Dice: " + ", ".join(
        f"{w['path']} ({fmt(w['dice'])})" for w in summary["worst"]), "",
        "Full report: report/report.html", ""]
    return "\n".join(lines)


def case_picture(image: np.ndarray, predicted: np.ndarray, reference: np.ndarray,
                 text: str) -> bytes:
    """The image with the reference outline (green) and the predicted one (red), as PNG."""
    from lungcad.explain.outline import gray_rgb, outline
    from lungcad.explain.render import draw_text, png_bytes

    rgb = gray_rgb(image)
    for mask, colour in ((reference, (0, 220, 0)), (predicted, (255, 40, 40))):
        rgb[outline(mask, width=2)] = colour
    return png_bytes(draw_text(rgb, text))
