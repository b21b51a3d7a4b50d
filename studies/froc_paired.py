"""Paired comparison of two detectors' out-of-fold marks on the same images: the CPM of each
and a paired bootstrap interval of their difference (the same image resamples for both, so the
images' shared difficulty cancels out).

    python studies/froc_paired.py runs/jsrt-nodule-heatmap-detector runs/s5/heatmap-detector-flip \
        --dataset ../shared/data/jsrt

Each folder is a ``lungcad experiment`` run of a detector config (``oof_findings.csv`` and
``oof_predictions.csv``); the hit rule and the CPM are those of ``lungcad evaluate --findings``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def main(argv=None) -> int:
    from lungcad.evaluation import froc

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", type=Path)
    parser.add_argument("candidate", type=Path)
    parser.add_argument("--dataset", type=Path, required=True, help="folder with labels.csv")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    images = pd.read_csv(args.baseline / "oof_predictions.csv")["path"].astype(str).tolist()
    other = pd.read_csv(args.candidate / "oof_predictions.csv")["path"].astype(str).tolist()
    if sorted(images) != sorted(other):
        print("the two runs predicted different images: no paired comparison", file=sys.stderr)
        return 2
    truth = froc.truth_from_table(pd.read_csv(args.dataset / "labels.csv"), images)
    events = []
    for run in (args.baseline, args.candidate):
        marks = froc.normalise_paths(froc.validate_findings(
            froc.read_findings(run / "oof_findings.csv")), truth)
        events.append(froc.match(marks, truth))

    point = [froc.cpm_of(ev) for ev in events]
    n = events[0].n_images
    rng = np.random.default_rng(args.seed)
    diffs = []
    for _ in range(args.resamples):
        weights = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
        diffs.append(froc.cpm_of(events[1], weights) - froc.cpm_of(events[0], weights))
    diffs = np.array(diffs)
    diffs = diffs[np.isfinite(diffs)]
    low, high = np.quantile(diffs, [0.025, 0.975])
    print(f"{n} images, {len(truth.nodules)} nodules, {len(diffs)} paired image resamples "
          f"(seed {args.seed})")
    print(f"CPM {args.baseline}: {point[0]:.3f}; {args.candidate}: {point[1]:.3f}")
    print(f"difference {point[1] - point[0]:+.3f} [95% percentile {low:+.3f}, {high:+.3f}]; "
          f"candidate higher in {np.mean(diffs > 0):.1%} of resamples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
