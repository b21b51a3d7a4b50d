"""``lungcad experiment CONFIG.yaml --out DIR``: cross-validate a config over its split file."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

DESCRIPTION = """\
Cross-validate CONFIG over the folds of its grouped split file. For each fold k: train into
DIR/fold-<k>/ (resuming an interrupted training), choose the decision threshold on the fold's
VALIDATION predictions by the config's rule, and predict the fold's held-out test part into
DIR/fold-<k>/test_predictions.csv. Then pool the out-of-fold predictions into
DIR/oof_predictions.csv, evaluate them (DIR/report/: report.json, report.md, report.html) and
write the per-fold mean ± SD beside the pooled figures in DIR/summary.json and summary.md.
DIR/meta.json records the command, config, split file sha256 and versions.

With --final (after every fold has run): train the same recipe on ALL labelled images into
DIR/final/model, with the threshold that the config's rule picks on the pooled out-of-fold
predictions, and a model card holding the cross-validated metrics; the model to ship.

No threshold is ever chosen on test predictions. Re-running the same command skips the folds
that are done, so an interrupted experiment continues where it stopped.

Config keys (configs/README.md): trainer (default lightning; also linear_probe, ct_finetune,
nodule_heatmap, two_stage, segmentation, or package.module:name for a module that registers
one), localisation (true: score saliency peaks against the manifest's nodule positions
x_512/y_512, out of fold; or {method: gradcam, margin_mm: 10}).
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "experiment", help="cross-validate a config: train, threshold on val, test each fold",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, metavar="CONFIG.yaml", help="YAML config (configs/)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="experiment folder to write (or continue)")
    parser.add_argument("--folds", type=int, metavar="K",
                        help="run only the first K folds (default: every fold of the split)")
    parser.add_argument("--split", type=Path, metavar="SPLIT.json",
                        help="split file, instead of the config's")
    parser.add_argument("--data", type=Path, metavar="DATASET",
                        help="dataset folder, instead of the config's")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a config key (repeatable)")
    parser.add_argument("--devices", type=int, help="Lightning devices per machine (GPUs, or "
                        "CPU processes with --strategy ddp)")
    parser.add_argument("--num-nodes", type=int, dest="num_nodes",
                        help="Lightning num_nodes: machines that train each fold together")
    parser.add_argument("--strategy", help="Lightning strategy, e.g. ddp")
    parser.add_argument("--bootstrap", type=int, default=2000, metavar="N",
                        help="bootstrap resamples for the pooled report's intervals "
                             "(default 2000; 0: none)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--final", action="store_true",
                        help="after the cross-validation: train the final model on all images "
                             "into DIR/final/model (threshold from the out-of-fold predictions)")
    parser.add_argument("--external", action="append", default=[], type=Path,
                        metavar="DATASET",
                        help="after the folds (and --final): score every fold model and the "
                             "final model on this dataset's lesions, a set never trained on "
                             "(repeatable); table in DIR/external-<name>.md beside summary.md")
    parser.add_argument("--name", metavar="NAME",
                        help="the final model's name (default: DIR's folder name)")
    parser.set_defaults(func=run)


def command_line(args: argparse.Namespace) -> str:
    """The command as a person would type it again (paths as given)."""
    words = ["lungcad", "experiment", str(args.config), "--out", str(args.out)]
    for flag in ("folds", "split", "data", "devices", "num_nodes", "strategy"):
        if getattr(args, flag, None) is not None:
            words += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    for override in args.overrides:
        words += ["--set", override]
    for dataset in getattr(args, "external", []):
        words += ["--external", str(dataset)]
    words += ["--bootstrap", str(args.bootstrap), "--seed", str(args.seed)]
    return shlex.join(words)


def final_command_line(args: argparse.Namespace) -> str:
    words = ["lungcad", "experiment", str(args.config), "--out", str(args.out)]
    for flag in ("split", "data"):
        if getattr(args, flag) is not None:
            words += [f"--{flag}", str(getattr(args, flag))]
    for override in args.overrides:
        words += ["--set", override]
    words += ["--final"] + (["--name", args.name] if args.name else [])
    return shlex.join(words)


def run(args: argparse.Namespace) -> int:
    from lungcad.errors import LungcadError
    from lungcad.experiment.config import load_experiment_config
    from lungcad.experiment.run import run_experiment
    from lungcad.experiment.summary import format_mean_sd

    if args.bootstrap < 0:
        raise LungcadError(f"--bootstrap must be 0 or more, not {args.bootstrap}")
    overrides = list(args.overrides)
    if args.data is not None:
        overrides.append(f"dataset={args.data.resolve()}")
    if args.split is not None:
        overrides.append(f"split={args.split.resolve()}")
    from lungcad.commands.train import hardware_overrides

    config, options = load_experiment_config(args.config, overrides + hardware_overrides(args))
    if args.final:
        from lungcad.experiment.final import final_fit

        model_dir = final_fit(config, options, args.out, name=args.name,
                              command=final_command_line(args))
        print(f"final model: {model_dir} (card: {model_dir / 'MODEL_CARD.md'})")
        _external(args, config)
        return 0
    if args.name:
        raise LungcadError("--name names the final model: use it with --final")
    result = run_experiment(config, options, args.out, n_folds=args.folds,
                            n_bootstrap=args.bootstrap, seed=args.seed,
                            command=command_line(args), config_path=args.config)
    summary = result.summary
    print(f"{summary['folds_run']} fold(s), {summary['n_out_of_fold']} out-of-fold predictions "
          f"(trained now: {result.trained_folds or 'none'})")
    for name, stat in summary["per_fold_mean_sd"].items():
        pooled = summary["pooled"][name]["value"]
        print(f"  {name:12s} per fold {format_mean_sd(stat):18s} pooled "
              + ("n/a" if pooled is None else f"{pooled:.3f}"))
    for warning in summary["warnings"]:
        print(f"lungcad experiment: WARNING: {warning.removeprefix('WARNING: ')}",
              file=sys.stderr)
    print(f"summary: {Path(args.out) / 'summary.md'}; report: "
          f"{Path(args.out) / 'report' / 'report.html'}")
    _external(args, config)
    return 0


def _external(args: argparse.Namespace, config: dict) -> None:
    """--external: every model of the experiment on each never-trained-on dataset."""
    if not args.external:
        return
    from lungcad.experiment.external import score_external

    for dataset in args.external:
        result = score_external(args.out, dataset, config["dataset"], args.bootstrap, args.seed)
        print(f"external {result['name']}: {result['n_images']} images, {result['n_lesions']} "
              "lesions; " + "; ".join(
                  f"{r['model']} sens@0.25 {r['sensitivity@0.25']:.3f}, image AUC "
                  + ("n/a" if r["image_auc"] is None else f"{r['image_auc']:.3f}")
                  for r in result["models"]))
        print(f"external table: {Path(args.out) / ('external-' + result['name'] + '.md')}")
