"""`lungcad evaluate`: score a predictions file and write a report (JSON, Markdown, HTML)."""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = """\
Score a labelled predictions file (from lungcad predict, a training run's val_predictions.csv,
or lungcad experiment): accuracy, log loss, confusion matrix, ROC AUC, average precision,
sensitivity, specificity, PPV, NPV, F1 and balanced accuracy with seeded bootstrap 95%
intervals, calibration (Brier, ECE, reliability diagram) and subgroup tables. Writes
report.json, report.md, report.html (self-contained) and figures/ into --out.

Threshold (binary tasks): with --validation the threshold is chosen on the validation
predictions (rule youden unless --threshold names another) and applied unchanged to the test
predictions. Validation predictions need only path, true_label and prob_<class> columns (as in
a training run's val_predictions.csv). A rule without --validation is chosen on the scored data itself, and the report
warns that this is optimistic. A number is applied as is. Without either, the model's own
predicted_label column is scored.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="score a predictions file and write a report",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("predictions", metavar="PREDICTIONS.csv", help="predictions to score")
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
    parser.add_argument("--out", required=True, metavar="REPORT_DIR", help="folder for the report")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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
    report = evaluate_predictions(test, validation, args.threshold, args.bootstrap, args.seed)
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
    print(f"report: {args.out}/report.html")
    return 0
