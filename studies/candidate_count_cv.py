"""How many candidates a two-stage detector should look at, chosen for each fold on the others.

A two-stage detector (``nodule-two-stage-lite0``) re-scores the ``second_stage.candidates``
strongest maxima of its stage-1 map (30 in ``configs/jsrt-nodule-two-stage.yaml``). More
candidates hold more nodules (the map's 30 maxima hold 75% of them, its 50 hold 80%) but give
the fused score more false candidates to out-rank. This study reads a finished
``lungcad experiment`` run of a two-stage config: each fold's saved model marks its own test
images through the product's path (:func:`lungcad.detection.detect.detect`, full image,
``jsrt-lungs`` mask) looking at ``--most`` candidates, and every candidate's P1 (the map) and
P2 (the patch classifier) are kept (``fold-<k>/candidates.csv``; resumable fold by fold).
Because the candidates come strongest map score first, at least 10 mm apart, the first n of
them are exactly what the detector looks at with ``candidates: n``; so each n of ``--counts``
is scored without marking the images again, by the detector's own rule (fused sqrt(P1 * P2),
the model's mark settings).

Nested choice: for each fold k, n is the count with the highest pooled CPM on the OTHER nine
folds' candidates (ties: the smaller n); fold k is marked with it. Fold k's labels never choose
its own n. Printed: how many of the nodules among the first ``--judge`` candidates
each score (P1, P2, fused) puts above the score of about 2 false candidates an image; every
fixed n pooled over the folds (n = the config's own must equal the
run's ``froc/`` figures: a check of this study), and the nested choice; each written as a run
folder (``oof_findings.csv``) for ``studies/froc_paired.py``.

    python studies/candidate_count_cv.py runs/two-stage-s1600 --dataset ../shared/data/jsrt
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

TASK = "jsrt-nodule"


def fold_candidates(run: Path, manifest, split: Path, k: int, most: int, log) -> pd.DataFrame:
    """Fold k's test images marked by fold k's model: every one of its ``most`` candidates."""
    from lungcad.data.splits import load_fold
    from lungcad.detection.detect import detect
    from lungcad.inference import load_model
    from lungcad.segmentation.predict import bundled_lung_model

    view = load_fold(manifest, split, TASK, k)
    model = load_model(run / f"fold-{k}" / "model")
    lungs = bundled_lung_model()
    rows, t0 = [], time.time()
    for path in view.test:
        found = detect(model, manifest.root / path, lungs=lungs,
                       second_stage={"candidates": most})
        height, width = found.lung_mask.shape      # the image's own (H, W)
        for rank, (c, p2) in enumerate(zip(found.candidates, found.candidate_p2)):
            rows.append({"path": path, "rank": rank, "x": c.x, "y": c.y,
                         "radius_mm": c.radius_mm, "malignancy": c.malignancy, "p1": c.score,
                         "p2": float(p2), "mm_per_pixel": found.mm_per_pixel,
                         "frame_size": width if width == height else np.nan, "fold": k})
    log(f"fold {k}: {len(view.test)} test images, {len(rows)} candidates "
        f"({time.time() - t0:.0f} s)")
    return pd.DataFrame(rows)


def marks_with(table: pd.DataFrame, counts: dict[int, int], settings) -> pd.DataFrame:
    """The detector's marks when fold k looks at its first ``counts[k]`` candidates."""
    from lungcad.detection.second_stage import rescored
    from lungcad.findings import Finding

    out = []
    for (path, fold), group in table.groupby(["path", "fold"], sort=False):
        first = group[group["rank"] < counts[fold]].sort_values("rank")
        found = [Finding(r.x, r.y, r.radius_mm, r.p1, r.malignancy) for r in first.itertuples()]
        for m in rescored(found, first["p2"].to_numpy(), float(first["mm_per_pixel"].iloc[0]),
                          settings):
            out.append({"path": path, "x": m.x, "y": m.y, "radius_mm": m.radius_mm,
                        "score": m.score, "frame_size": first["frame_size"].iloc[0]})
    return pd.DataFrame(out, columns=["path", "x", "y", "radius_mm", "score", "frame_size"])


def row(name: str, result: dict) -> str:
    at = {r["fp_per_image"]: r for r in result["sensitivity_at"]}
    return (f"| {name} | {result['cpm']['value']:.3f} [{result['cpm']['ci_low']:.3f}, "
            f"{result['cpm']['ci_high']:.3f}] | " + " | ".join(
                f"{at[r]['sensitivity']:.3f} [{at[r]['ci_low']:.3f}, {at[r]['ci_high']:.3f}]"
                for r in (1.0, 2.0, 4.0)) + " |")


def main(argv=None) -> int:
    from lungcad.data.manifest import Manifest
    from lungcad.detection.marks import MarkSettings
    from lungcad.evaluation import froc
    from lungcad.evaluation.lesion_truth import truth_from_lesions
    from lungcad.model_dir import read_spec
    from lungcad.training.two_stage import candidate_hits

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished lungcad experiment run of a "
                                               "two-stage config")
    parser.add_argument("--dataset", type=Path, default=Path("../shared/data/jsrt"))
    parser.add_argument("--split", type=Path, default=Path("splits/jsrt-nodule-10fold.json"))
    parser.add_argument("--most", type=int, default=60, help="candidates looked at, at most")
    parser.add_argument("--counts", type=int, nargs="+", default=[20, 30, 40, 50, 60])
    parser.add_argument("--judge", type=int, default=30,
                        help="how many candidates an image the P1/P2/fused comparison reads")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write (default RUN/candidate-count)")
    parser.add_argument("--bootstrap", type=int, default=2000)
    args = parser.parse_args(argv)
    if max(args.counts) > args.most or min(args.counts) < 1:
        print(f"--counts must lie in 1..--most ({args.most})", file=sys.stderr)
        return 2
    out = args.out or args.run / "candidate-count"
    out.mkdir(parents=True, exist_ok=True)
    manifest = Manifest.load(args.dataset)
    folds = sorted(int(p.parent.name.split("-")[1]) for p in args.run.glob("fold-*/model"))
    if not folds:
        print(f"{args.run}: no fold models (fold-<k>/model)", file=sys.stderr)
        return 2
    for k in folds:                                  # resumable: a finished fold is kept
        done = out / f"fold-{k}" / "candidates.csv"
        if not done.is_file():
            done.parent.mkdir(exist_ok=True)
            fold_candidates(args.run, manifest, args.split, k, args.most,
                            lambda m: print(m, flush=True)).to_csv(done.with_suffix(".tmp"),
                                                                   index=False)
            done.with_suffix(".tmp").replace(done)
    table = pd.concat([pd.read_csv(out / f"fold-{k}" / "candidates.csv", dtype={"path": str})
                       for k in folds], ignore_index=True)
    spec = read_spec(args.run / f"fold-{folds[0]}" / "model")
    settings = MarkSettings.from_mapping((spec.detection or {}).get("marks"))
    images = list(dict.fromkeys(table["path"]))
    truth = truth_from_lesions(manifest, images)

    def cpm(part: pd.DataFrame, part_truth, n: int) -> float:
        marks = marks_with(part, {k: n for k in folds}, settings)
        return froc.cpm_of(froc.match(froc.normalise_paths(froc.validate_findings(marks),
                                                           part_truth), part_truth))

    lines = ["| marks by (out of fold) | CPM | sens. at 1 FP/image | at 2 | at 4 |",
             "|---|---|---|---|---|"]
    for n in args.counts:
        marks = marks_with(table, {k: n for k in folds}, settings)
        result = froc.froc_analysis(marks, truth, n_bootstrap=args.bootstrap, seed=0)
        folder = out / f"candidates-{n}"
        folder.mkdir(exist_ok=True)
        marks.to_csv(folder / "oof_findings.csv", index=False)
        lines.append(row(f"{n} candidates an image, every fold", result))
    chosen = {}
    for k in folds:
        others = table[table["fold"] != k]
        others_truth = truth_from_lesions(manifest, list(dict.fromkeys(others["path"])))
        scores = {n: cpm(others, others_truth, n) for n in args.counts}
        chosen[k] = max(args.counts, key=lambda n: (scores[n], -n))
    marks = marks_with(table, chosen, settings)
    result = froc.froc_analysis(marks, truth, n_bootstrap=args.bootstrap, seed=0)
    folder = out / "nested"
    folder.mkdir(exist_ok=True)
    marks.to_csv(folder / "oof_findings.csv", index=False)
    (folder / "froc.json").write_text(json.dumps(
        {"candidates": {str(k): n for k, n in chosen.items()}, **result}, indent=1))
    lines.append(row("n chosen per fold on the other folds (nested)", result))
    hit = candidate_hits(table, truth)          # the nodule row each candidate hits, or -1
    for n in args.counts:
        found = set(hit[(table["rank"] < n).to_numpy() & (hit >= 0)])
        print(f"among the first {n} candidates an image: {len(found)} of {len(truth.nodules)} "
              "nodules")
    judged = table[(table["rank"] < args.judge).to_numpy()].assign(
        fused=lambda t: np.sqrt(t["p1"] * t["p2"]), nodule=hit[
            (table["rank"] < args.judge).to_numpy()])
    false = judged[judged["nodule"] < 0]
    level = 2 * len(images)               # about 2 false candidates an image
    above = {col: int((judged[judged["nodule"] >= 0].groupby("nodule")[col].max() >
                       false[col].nlargest(level + 1).iloc[-1]).sum())
             for col in ("p1", "p2", "fused")}
    print(f"of the {judged.loc[judged['nodule'] >= 0, 'nodule'].nunique()} nodules among the "
          f"first {args.judge} candidates, above the {level + 1}th false candidate's score "
          f"(no suppression between marks): {above['p1']} by P1, {above['p2']} by P2, "
          f"{above['fused']} fused")
    print("candidates per fold (chosen on the other folds):",
          ", ".join(f"{k}: {n}" for k, n in chosen.items()))
    print("\n".join(lines))
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
