"""``lungcad train CONFIG.yaml --out RUN_DIR``: train one fold with the config's trainer, write a
run folder."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train a model from a YAML config into a run folder",
        description="Train one fold of a split as CONFIG says, with its trainer (trainer: "
                    "lightning, linear_probe, nodule_heatmap; see configs/README.md). The run "
                    "folder gets val_predictions.csv, threshold.json (chosen on the validation "
                    "part) and model/ (a model directory for `lungcad predict`); a Lightning run "
                    "also config.yaml, meta.json, metrics.csv, curves.png and checkpoints/, and "
                    "re-running the same command after an interruption resumes from the last "
                    "checkpoint.")
    parser.add_argument("config", type=Path, help="YAML config (configs/*.yaml)")
    parser.add_argument("--out", type=Path, required=True, help="run folder to write (or resume)")
    parser.add_argument("--data", type=Path, help="dataset folder, instead of the config's dataset")
    parser.add_argument("--split", type=Path, help="split JSON, instead of the config's split")
    parser.add_argument("--fold", type=int, help="fold of the split to train (default: the config's)")
    parser.add_argument("--epochs", type=int, help="number of epochs (default: the config's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set lr=3e-4 --set model_args.pretrained=none "
                             "(repeatable)")
    parser.add_argument("--devices", type=int, help="number of devices (GPUs, or CPU processes with ddp)")
    parser.add_argument("--num-nodes", type=int, dest="num_nodes",
                        help="number of machines (Lightning's num_nodes; launch one process per "
                             "device on each, docs/scale.md)")
    parser.add_argument("--strategy", help="Lightning strategy, e.g. ddp")
    parser.add_argument("--restart", action="store_true",
                        help="start over in --out instead of resuming the run found there")
    parser.set_defaults(func=run)


def cli_overrides(args: argparse.Namespace) -> list[str]:
    """Command-line flags as config overrides (paths made absolute against the current folder)."""
    overrides = list(args.overrides)
    if args.data is not None:
        overrides.append(f"dataset={args.data.resolve()}")
    if args.split is not None:
        overrides.append(f"split={args.split.resolve()}")
    for key in ("fold", "epochs"):
        value = getattr(args, key)
        if value is not None:
            overrides.append(f"{key}={value}")
    return overrides + hardware_overrides(args)


def hardware_overrides(args: argparse.Namespace) -> list[str]:
    """--devices, --num-nodes, --strategy as config overrides: Lightning gets them as given."""
    return [f"{key}={getattr(args, key)}" for key in ("devices", "num_nodes", "strategy")
            if getattr(args, key, None) is not None]


def run(args: argparse.Namespace) -> int:
    from lungcad.training.config import load_config
    from lungcad.training.fit import train

    config = load_config(args.config, cli_overrides(args))
    model_dir = train(config, args.out, resume=not args.restart)
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank == 0:
        print(f"run folder: {args.out}\nmodel: {model_dir} (use it with `lungcad predict {model_dir} IMAGE`)")
    return 0
