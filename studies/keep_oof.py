"""Keep a detector experiment's out-of-fold marks in the repository (``docs/oof/NAME``), so that
a paired comparison against it (``studies/froc_paired.py``) needs no re-run of its folds.

    python studies/keep_oof.py runs/two-stage-synth-3ctx docs/oof/two-stage-synth-3ctx

Only the model's own output is kept, never an image or the dataset's clinical table:
``oof_findings.csv`` (path, x, y, radius_mm, score, frame_size, fold: every mark) and
``oof_predictions.csv`` (path, fold, prob_nodule: every image predicted). The truth comes from
the dataset's ``labels.csv`` when the tables are read, as for any run folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

FINDINGS = ["path", "x", "y", "radius_mm", "score", "frame_size", "fold"]
PREDICTIONS = ["path", "fold", "prob_nodule"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished `lungcad experiment` run of a detector")
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)

    tables = {"oof_findings.csv": FINDINGS, "oof_predictions.csv": PREDICTIONS}
    frames = {}
    for name, columns in tables.items():
        source = args.run / name
        if not source.is_file():
            print(f"{source} does not exist: is {args.run} a finished detector experiment?",
                  file=sys.stderr)
            return 2
        frame = pd.read_csv(source, dtype={"path": str})
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            print(f"{source} lacks the column(s) {', '.join(missing)}", file=sys.stderr)
            return 2
        frames[name] = frame[columns]
    args.out.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        frame.to_csv(args.out / name, index=False)
    print(f"{args.out}: {len(frames['oof_findings.csv'])} marks on "
          f"{len(frames['oof_predictions.csv'])} images")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
