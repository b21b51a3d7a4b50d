"""``lungcad calibrate MODEL_DIR --experiment DIR``: add the domain check and the calibration
to an existing model directory, from the experiment that made it (no retraining)."""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = """\
Add to a model directory, from the finished cross-validation experiment that made it
(`lungcad experiment CONFIG --out DIR`):

  domain.npz + model.json "domain"   what the training images look like (image descriptors,
                                     probabilistic-PCA Mahalanobis score) and the score's
                                     threshold: the 99th percentile (--quantile) of the training
                                     images' OUT-OF-FOLD scores, with the experiment's folds
  model.json "calibration"           Platt (binary) or temperature (multi-class) scaling fitted
                                     on DIR/oof_predictions.csv only: each image predicted by a
                                     fold model that never trained on it (not for segmenters)

`lungcad experiment ... --final` does the same for the model it writes; this verb upgrades a
model made before, keeping its weights. A binary model's threshold moves to the calibrated
scale (the map is increasing, so every verdict stays the same). Running it again refits both.
Research software, not a medical device.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "calibrate", help="add the domain check and calibration to a model directory",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", metavar="MODEL_DIR", type=Path, help="a model directory")
    parser.add_argument("--experiment", required=True, type=Path, metavar="DIR",
                        help="the finished experiment folder the model was made from")
    parser.add_argument("--quantile", type=float, default=0.99,
                        help="out-of-fold quantile that sets the domain threshold (default 0.99)")
    parser.add_argument("--no-calibration", action="store_true",
                        help="add the domain check only")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lungcad.domain.fit import add_domain_and_calibration
    from lungcad.errors import LungcadError

    if not 0.5 <= args.quantile < 1:
        raise LungcadError(f"--quantile must be in [0.5, 1), not {args.quantile}")
    add_domain_and_calibration(args.model_dir, args.experiment, quantile=args.quantile,
                               calibrate=not args.no_calibration)
    print(f"updated {args.model_dir}")
    return 0
