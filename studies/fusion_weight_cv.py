"""The second stage's fusion weight, chosen for each fold on the other folds (nested, no peeking).

The two-stage detector fuses the map's P1 and the patch classifier's P2 by a weighted geometric
mean, P1^(1-w) * P2^w (w = 0.5 is the fixed rule sqrt(P1 * P2)). This study reads a finished
``studies/two_stage_cv.py`` run (its ``fold-<k>/test_candidates.csv``: every test candidate's
P1 and P2, out of fold) and, for each fold k, picks w on a grid by the pooled CPM of the OTHER
nine folds' candidates, then marks fold k's images with that w. Fold k's labels never choose
its own weight. The pooled marks are scored by FROC (bootstrap intervals) and written as a run
folder (``oof_findings.csv``) for ``studies/froc_paired.py``; each fold's w is printed.

    python studies/fusion_weight_cv.py runs/two-stage/lite0-64 --dataset ../shared/data/jsrt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from two_stage_cv import final_marks  # noqa: E402  (the study's own mark rule)

GRID = np.round(np.linspace(0.0, 1.0, 11), 2)


def fused(table: pd.DataFrame, w: float) -> np.ndarray:
    eps = 1e-6
    return np.exp((1 - w) * np.log(table["p1"].clip(eps)) + w * np.log(table["p2"].clip(eps)))


def cpm_for(table: pd.DataFrame, labels: pd.DataFrame, w: float) -> float:
    from lungcad.evaluation import froc

    truth = froc.truth_from_table(labels, list(dict.fromkeys(table["path"])))
    return froc.cpm_of(froc.match(final_marks(table, fused(table, w)), truth))


def main(argv=None) -> int:
    from lungcad.data.manifest import Manifest
    from lungcad.evaluation import froc

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished studies/two_stage_cv.py --out folder")
    parser.add_argument("--dataset", type=Path, default=Path("../shared/data/jsrt"))
    parser.add_argument("--bootstrap", type=int, default=2000)
    args = parser.parse_args(argv)

    parts = [args.run / f"fold-{k}" / "test_candidates.csv" for k in range(10)]
    if not all(p.is_file() for p in parts):
        print(f"{args.run}: not every fold of the study is done", file=sys.stderr)
        return 2
    table = pd.concat([pd.read_csv(p) for p in parts], ignore_index=True)
    labels = pd.read_csv(args.dataset / "labels.csv")
    manifest = Manifest.load(args.dataset)
    chosen, marks = {}, []
    for k in range(10):
        others = table[table["fold"] != k]
        scores = {w: cpm_for(others, labels, w) for w in GRID}
        chosen[k] = max(GRID, key=lambda w: (scores[w], -abs(w - 0.5)))  # ties: nearest 0.5
        mine = table[table["fold"] == k]
        marks.append(final_marks(mine, fused(mine, chosen[k])))
    marks = pd.concat(marks, ignore_index=True)
    truth = froc.truth_from_table(labels, manifest.paths)
    result = froc.froc_analysis(marks, truth, n_bootstrap=args.bootstrap, seed=0)
    folder = args.run / "fused-nested-w"
    folder.mkdir(exist_ok=True)
    marks.to_csv(folder / "oof_findings.csv", index=False)
    (folder / "froc.json").write_text(json.dumps({"weights": {str(k): float(w) for k, w in
                                                              chosen.items()}, **result}, indent=1))
    at = {r["fp_per_image"]: r for r in result["sensitivity_at"]}
    print("fusion weight w per fold (chosen on the other nine):",
          ", ".join(f"{k}: {w:.1f}" for k, w in chosen.items()))
    print(f"| fused, w per fold | {result['cpm']['value']:.3f} [{result['cpm']['ci_low']:.3f}, "
          f"{result['cpm']['ci_high']:.3f}] | " + " | ".join(
              f"{at[r]['sensitivity']:.3f} [{at[r]['ci_low']:.3f}, {at[r]['ci_high']:.3f}]"
              for r in (1.0, 2.0, 4.0)) + " |")
    print(f"written: {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
