"""`lungcad evaluate`: score a predictions file and write a report (JSON, Markdown, HTML)."""

from __future__ import annotations

import argparse
import sys

DEFAULT_MARGIN_MM = 5.0  # = lungcad.evaluation.froc.DEFAULT_MARGIN_MM (kept import-light)

DESCRIPTION = """\
Score a labelled predictions file (from lungcad predict, a training run's val_predictions.csv,
or lungcad experiment): accuracy, log loss, confusion matrix, ROC AUC, average precision,
sensitivity, specificity, PPV, NPV, F1 and balanced accuracy with seeded bootstrap 95%
intervals, calibration (Brier, ECE, reliability diagram) and subgroup tables. Writes
report.json, report.md, report.html (self-contained) and figures/ into --out.

Calibration before / after: where the predictions have a fold column (lungcad experiment's
oof_predictions.csv), ECE and Brier with intervals before and after Platt (binary) or
temperature (multi-class) scaling, each fold calibrated by a map fitted on the other folds'
out-of-fold predictions only. Selective prediction: accuracy (and binary ROC AUC) of the images
kept when the model abstains on its least confident, or (with a domain_score column) most
out-of-domain, 5-50%.

Threshold (binary tasks): with --validation the threshold is chosen on the validation
predictions (rule youden unless --threshold names another) and applied unchanged to the test
predictions. Validation predictions need only path, true_label and prob_<class> columns (as in
a training run's val_predictions.csv). A rule without --validation is chosen on the scored data itself, and the report
warns that this is optimistic. A number is applied as is. Without either, the model's own
predicted_label column is scored.

Lesion detection (FROC): --findings FINDINGS.csv (path,x,y,radius_mm,score; coordinates in
the image's own pixels) with --dataset DATASET_DIR: its lesions.csv (any number of lesions an
image, boxes x0,y0,x1,y1 and/or centres x,y with diameter_mm, a label such as nodule or mass;
docs/lesions.md), or, for a JSRT dataset without one, its labels.csv rows with x_512, y_512 and
size_mm (marks then in a frame_size px JSRT frame, 512 by default). A mark hits a lesion when its
centre is within the lesion's radius plus --margin-mm (default 5) of its centre, or inside its
box grown by --margin-mm. Millimetres come from each image's spacing: labels.csv spacing_mm, the
image header, else an assumed JSRT field of view (358.4 mm wide), said in the output. Every image
of the dataset counts, or only those of PREDICTIONS.csv when one is given. Writes froc.json and a
FROC section (sensitivity at 1/8 to 8 false positives per image, CPM, NODE21's figures: the
sensitivity at 1/8, 1/4 and 1/2 FP per image and the image-level AUC of the strongest mark, per
label tables, bootstrap intervals, figure) into the report. PREDICTIONS.csv may be left out.

Training images: where PREDICTIONS.csv has lungcad predict's in_training_data column (the model
directory records its training images) and some rows are True, the report and this command
say NOT A VALIDATION, with how many images the model was trained on: such scores are in-sample.

Clustered rows: --group-column COLUMN adds intervals that resample whole groups (a cluster
bootstrap: slices of one patient, or near-duplicate slices where there are no patient ids)
beside the row-resampled ones, in report.json (group_bootstrap) and a report section. The
groups come from the predictions' COLUMN, or from --groups SPLIT.json (lungcad data split's
path -> group map) or a CSV with path and COLUMN.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="score a predictions file and write a report",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("predictions", metavar="PREDICTIONS.csv", nargs="?",
                        help="predictions to score (optional with --findings)")
    parser.add_argument("--findings", metavar="FINDINGS.csv",
                        help="nodule marks (path,x,y,radius_mm,score) to score as FROC")
    parser.add_argument("--dataset", metavar="DATASET_DIR",
                        help="dataset whose labels.csv holds the nodules (with --findings)")
    parser.add_argument("--margin-mm", type=float, default=DEFAULT_MARGIN_MM, metavar="MM",
                        help="hit margin beyond the nodule's radius, in mm (default "
                             f"{DEFAULT_MARGIN_MM:g})")
    parser.add_argument("--validation", metavar="VAL_PREDICTIONS.csv",
                        help="validation predictions to choose the threshold on")
    parser.add_argument("--threshold", metavar="RULE",
                        help="validation (default with --validation), youden, f1, "
                             "sensitivity:<x>, or a number such as 0.5")
    parser.add_argument("--bootstrap", type=int, default=2000, metavar="N",
                        help="bootstrap resamples for the confidence intervals (default 2000; "
                             "0: no intervals)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--model", metavar="NAME",
                        help="score only the rows of this model (the file's model column)")
    parser.add_argument("--group-column", metavar="COLUMN",
                        help="also give intervals that resample whole groups of rows (patients, "
                             "near-duplicate slices) named by this column, not single rows")
    parser.add_argument("--groups", metavar="SPLIT.json|TABLE.csv",
                        help="where --group-column's groups come from when the predictions lack "
                             "the column: a split file (its path -> group map) or a CSV with "
                             "path and the column (e.g. a dataset's labels.csv)")
    parser.add_argument("--out", required=True, metavar="REPORT_DIR", help="folder for the report")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lungcad.errors import LungcadError

    if args.predictions is None and args.findings is None:
        raise LungcadError("give a PREDICTIONS.csv to score, --findings FINDINGS.csv with "
                           "--dataset DATASET_DIR, or both")
    if (args.findings is None) != (args.dataset is None):
        raise LungcadError("--findings and --dataset go together: the findings are scored "
                           "against the nodules of the dataset's labels.csv")
    if args.groups is not None and args.group_column is None:
        raise LungcadError("--groups names where --group-column's groups come from: give "
                           "--group-column too (e.g. --group-column group)")
    if args.predictions is None:
        return _run_froc_only(args)
    return _run_predictions(args)


def _froc(args: argparse.Namespace, image_paths: list[str] | None) -> dict:
    """Score the findings (FROC), write froc.json into --out, return the result."""
    from pathlib import Path

    from lungcad.data.manifest import Manifest
    from lungcad.evaluation.froc import (
        froc_analysis,
        normalise_paths,
        read_findings,
        relative_paths,
    )
    from lungcad.evaluation.lesion_truth import truth_from_lesions
    from lungcad.provenance import write_json

    manifest = Manifest.load(args.dataset)
    if image_paths is not None:
        image_paths = relative_paths(image_paths, args.dataset, set(manifest.paths))
    truth = truth_from_lesions(manifest, image_paths)
    findings = normalise_paths(read_findings(args.findings), truth, args.dataset, args.findings)
    froc = froc_analysis(findings, truth, args.margin_mm, args.bootstrap, args.seed)
    froc["inputs"] = {"findings": str(args.findings), "dataset": str(args.dataset),
                      "images_from": "predictions" if image_paths is not None else "dataset"}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    write_json(Path(args.out) / "froc.json", froc)
    return froc


def _print_froc(froc: dict) -> None:
    cpm = froc["cpm"]
    interval = (f" [{cpm['ci_low']:.3f}, {cpm['ci_high']:.3f}]"
                if cpm["ci_low"] is not None else "")
    print(f"FROC: {froc['n_nodules']} lesions on {froc['n_images']} images, margin "
          f"{froc['margin_mm']:g} mm; CPM {cpm['value']:.3f}{interval}; "
          + ", ".join(f"{r['fp_per_image']:g} FP/image {r['sensitivity']:.3f}"
                      for r in froc["sensitivity_at"]))
    auc = froc.get("image_level_auc") or {}
    if auc.get("value") is not None:
        print(f"image-level AUC (strongest mark) {auc['value']:.3f}"
              + (f" [{auc['ci_low']:.3f}, {auc['ci_high']:.3f}]" if auc["ci_low"] is not None
                 else ""))
    if len(froc.get("by_label", [])) > 1:
        print("by label: " + "; ".join(
            f"{r['label']} ({r['lesions']}) CPM {r['cpm']:.3f}, 2 FP/image "
            f"{r['sensitivity_at']['2']:.3f}" for r in froc["by_label"]))
    for note in froc.get("lesions_and_spacing", []):
        print(f"note: {note}")


def _run_froc_only(args: argparse.Namespace) -> int:
    from lungcad.evaluation.froc import froc_section
    from lungcad.evaluation.render import write_report
    from lungcad.evaluation.report import sections_report

    froc = _froc(args, None)
    report = sections_report({"findings": froc["inputs"]}, [froc_section(froc)])
    write_report(report, args.out)
    _print_froc(froc)
    print(f"report: {args.out}/report.html")
    return 0


def _add_selective(report: dict, test, args: argparse.Namespace) -> None:
    """Calibration before/after (cross-fitted by fold: out of fold only) and risk-coverage."""
    from lungcad.evaluation.predictions import validate_predictions
    from lungcad.evaluation.selective import selective_sections

    preds = validate_predictions(test, require_labels=True, require_decisions=False)
    extra, sections = selective_sections(preds, report["threshold"]["value"], args.bootstrap,
                                         args.seed)
    report["calibration"]["recalibrated_out_of_fold"] = extra["calibration_comparison"]
    report["curves"]["risk_coverage"] = extra["risk_coverage"]
    report["sections"] = sections + report.get("sections", [])  # before FROC, groups


def _run_predictions(args: argparse.Namespace) -> int:
    from lungcad.evaluation.predictions import read_predictions, select_model
    from lungcad.evaluation.render import write_report
    from lungcad.evaluation.report import evaluate_predictions

    # predicted_label/model may be absent when --threshold or --validation makes the decisions;
    # evaluate_predictions says so if they are needed
    test = read_predictions(args.predictions, require_decisions=False)
    # a training run's val_predictions.csv has no predicted_label/model columns; choosing a
    # threshold needs neither
    validation = (read_predictions(args.validation, require_decisions=False)
                  if args.validation else None)
    if args.model:
        test = select_model(test, args.model)  # needs the model column; says so if absent
        if validation is not None and "model" in validation.columns:
            validation = select_model(validation, args.model)
    froc = None
    sections = []
    if args.findings is not None:
        from lungcad.evaluation.froc import froc_section

        froc = _froc(args, test["path"].astype(str).tolist())
        sections.append(froc_section(froc))
    if args.group_column is not None:
        from lungcad.evaluation.grouped import attach_groups

        test = attach_groups(test, args.group_column, args.groups)
    report = evaluate_predictions(test, validation, args.threshold, args.bootstrap, args.seed,
                                  extra_sections=sections)
    if args.group_column is not None:
        from lungcad.evaluation.grouped import group_interval_section
        from lungcad.evaluation.report import add_section

        report["group_bootstrap"], section = group_interval_section(
            report, test, args.group_column, args.bootstrap, args.seed)
        add_section(report, section)
    _add_selective(report, test, args)
    from lungcad.evaluation.in_sample import mark_in_sample

    mark_in_sample(report, test)  # training images among them: not a validation, and it says so
    write_report(report, args.out)

    for warning in report["warnings"]:
        text = warning if warning.startswith("WARNING") else f"WARNING: {warning}"
        print(f"lungcad evaluate: {text}", file=sys.stderr)
    metrics = report["metrics"]
    headline = ("roc_auc", "sensitivity", "specificity", "accuracy") if report["task"]["binary"] \
        else ("macro_roc_auc", "macro_f1", "accuracy", "balanced_accuracy")
    parts = []
    for name in headline:
        record = metrics[name]
        value = "n/a" if record["value"] is None else f"{record['value']:.3f}"
        if record["ci_low"] is not None:
            value += f" [{record['ci_low']:.3f}, {record['ci_high']:.3f}]"
        parts.append(f"{name} {value}")
    threshold = report["threshold"]
    print(f"{report['task']['n']} cases; threshold {threshold['rule']}"
          + (f" = {threshold['value']:.4g} (chosen on {threshold['chosen_on']})"
             if threshold["value"] is not None else " (predicted_label as given)"))
    print("; ".join(parts))
    if "group_bootstrap" in report:
        from lungcad.evaluation.grouped import headline_text

        print(headline_text(report["group_bootstrap"]))
    if froc is not None:
        _print_froc(froc)
    print(f"report: {args.out}/report.html")
    return 0
