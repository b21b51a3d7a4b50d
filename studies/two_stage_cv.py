"""A trained second stage for the nodule detector, cross-validated fold by fold (resumable).

Stage 1 is a cross-validated heatmap detector run (``lungcad experiment`` on
``configs/jsrt-nodule-heatmap-detector.yaml`` or ``...-synthetic.yaml``): fold k's model never
saw fold k's test images. For each fold k, on fold k's *training* images only:

- candidates: the ``--candidates`` strongest maxima (at least 10 mm apart, inside the
  ``jsrt-lungs`` mask dilated by 20 mm) of the fold model's flip-averaged nodule map; on the
  training images the model's own false marks there are its hard negatives (``--negatives
  hard``), or negatives are drawn at random inside the lungs (``--negatives random``);
- positives: every training nodule's centre, every candidate that hits one (FROC hit rule,
  radius + 5 mm), and ``--synthetic-copies`` copies of each training image with up to three
  synthetic nodules each (:mod:`lungcad.training.synthetic_nodules`; 0: none);
- with ``--blobs N``, up to N dot-filter blob candidates an image added to stage 1's (at least
  10 mm from them; their P1 is the map's cell where they lie; computed once for every image, or
  read from ``--blob-file``, e.g. ``candidates-dot.csv`` of ``studies/candidate_recall.py``);
- a patch classifier (``--classifier cnn``: small CNN from scratch; ``lite0``: ImageNet Lite0,
  blocks 5-10 fine-tuned) on two fields of view (``--context-mm``, default 24 and 48 mm;
  ``--side`` px each, default 32), balanced batches, random rotation, mirror, scale 0.8-1.25
  and centre jitter (:mod:`lungcad.training.patch_classifier`).

Fold k's test candidates are then scored by the classifier (P2: averaged over the 8 symmetries
of the square; and read once, without averaging); the marks of each variant are the 10
strongest candidates an image, at least 20 mm apart (the bundled detector's settings), by:
``stage1`` (P1, the map), ``stage2`` (P2, the classifier), ``fused`` (sqrt(P1 * P2), the rule
fixed beforehand) and ``fused-no-tta`` (the same with P2 read once).
Each variant's pooled out-of-fold marks are scored by FROC (2,000 bootstrap resamples of
images) and written as a run folder (``oof_findings.csv``, ``oof_predictions.csv``) for
``studies/froc_paired.py``.

    python studies/two_stage_cv.py --stage1 runs/heatmap-detector-flip \\
        --dataset ../shared/data/jsrt --out runs/two-stage/cnn-synthetic-hard
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

SIZE, MM = 512, 0.7          # the heatmap network's input; JSRT at 512 px
TASK = "jsrt-nodule"
PEAKS, FINAL_MIN_MM = 10, 20.0


def run_fold(args, k: int, manifest, truth, log) -> pd.DataFrame:
    import torch

    from lungcad.data.splits import load_fold
    from lungcad.detection.second_stage import SecondStageSettings
    from lungcad.lung_model import read_model_dir
    from lungcad.models.nodule_patch import build_patch_classifier, score_candidates
    from lungcad.models.patches import PatchSettings
    from lungcad.training.patch_classifier import PatchTraining, train_patch_classifier
    from lungcad.training.synthetic_nodules import training_image_loaders
    from lungcad.training.two_stage import training_candidates, training_samples

    torch.set_num_threads(args.threads)
    view = load_fold(manifest, args.split, TASK, k)
    stage1 = read_model_dir(args.stage1 / f"fold-{k}" / "model").network
    load_image, load_mask = training_image_loaders(manifest, SIZE)
    second = SecondStageSettings(candidates=args.candidates, candidate_distance_mm=10.0)
    t0 = time.time()
    train_c, test_c = (training_candidates(stage1, manifest, list(paths), load_mask, SIZE, MM,
                                           second, 20.0) for paths in (view.train, view.test))
    if args.blobs:
        blobs = blob_table(args, manifest, load_image, load_mask)
        train_c, test_c = (with_blobs(stage1, manifest, c, blobs, args.blobs)
                           for c in (train_c, test_c))
    images, samples = training_samples(manifest, view.train, list(view.val) + list(view.test),
                                       train_c, load_image, load_mask, SIZE, MM,
                                       args.negatives, args.synthetic_copies, args.seed, log)
    log(f"fold {k}: {int(samples['label'].sum())} positive and "
        f"{int((samples['label'] == 0).sum())} negative samples ({time.time() - t0:.0f} s)")
    torch.manual_seed(args.seed)
    kwargs = {"frozen_blocks": 5, "last_block": 11} if args.classifier == "lite0" else {}
    patches = PatchSettings(args.side, tuple(args.context_mm))
    network = build_patch_classifier(args.classifier, patches.channels, **kwargs)
    train_patch_classifier(network, images, samples, MM, patches,
                           training=PatchTraining(steps=args.steps, seed=args.seed), log=log)
    p2, single = [], []
    for path, group in test_c.groupby("path", sort=False):
        image, xy = torch.from_numpy(load_image(path)), group[["x", "y"]].to_numpy()
        p2.append(pd.Series(score_candidates(network, image, xy, MM, patches, tta=True),
                            index=group.index))
        single.append(pd.Series(score_candidates(network, image, xy, MM, patches, tta=False),
                                index=group.index))
    test_c["p2"], test_c["p2_single"] = pd.concat(p2), pd.concat(single)
    test_c["fold"] = k
    log(f"fold {k}: done in {time.time() - t0:.0f} s")
    return test_c


def blob_table(args, manifest, load_image, load_mask) -> pd.DataFrame:
    """Every image's blob candidates (the dot filter at 5-30 mm inside the dilated lungs;
    nothing fitted, so the same for every fold), computed once into OUT/blobs.csv."""
    from lungcad.detection.candidates import blob_candidates

    cache = args.blob_file or args.out / "blobs.csv"
    if not cache.is_file():
        frames = [blob_candidates(load_image(p), load_mask(p), MM, limit=3 * args.blobs)
                  .assign(path=p) for p in manifest.paths]
        pd.concat(frames, ignore_index=True).to_csv(cache, index=False)
    return pd.read_csv(cache, dtype={"path": str})


def with_blobs(stage1, manifest, candidates: pd.DataFrame, blobs: pd.DataFrame,
               extra: int) -> pd.DataFrame:
    """``candidates`` (stage 1's maxima) plus, per image, up to ``extra`` blob candidates at
    least 10 mm from every candidate already there (strongest blob first); a blob's ``p1`` is
    stage 1's cell probability where it lies."""
    from lungcad.models.nodule_heatmap import cell_probabilities
    from lungcad.training import nodule_heatmap

    paths = list(dict.fromkeys(candidates["path"]))
    maps = cell_probabilities(stage1, nodule_heatmap._features_for(stage1, manifest, paths,
                                                                   SIZE, None))
    out = []
    for path, cells in zip(paths, maps):
        mine = candidates[candidates["path"] == path]
        xy = mine[["x", "y"]].to_numpy(float)
        added = []
        for b in blobs[blobs["path"] == path].sort_values("rank").itertuples():
            if len(added) >= extra:
                break
            if len(xy) and (np.hypot(xy[:, 0] - b.x, xy[:, 1] - b.y) * MM < 10.0).any():
                continue
            grid = cells.shape[-1]
            p1 = float(cells[0, min(int(b.y * grid / SIZE), grid - 1),
                             min(int(b.x * grid / SIZE), grid - 1)])
            added.append({"path": path, "x": b.x, "y": b.y, "radius_mm": b.radius_mm,
                          "score": p1, "p1": p1})
            xy = np.vstack([xy, [b.x, b.y]])
        out += [mine, pd.DataFrame(added)]
    return pd.concat([f for f in out if len(f)], ignore_index=True)


def final_marks(candidates: pd.DataFrame, score) -> pd.DataFrame:
    """Per image the PEAKS strongest candidates by ``score``, FINAL_MIN_MM apart (as the
    two-stage detector keeps its marks: :func:`lungcad.detection.second_stage.keep_apart`)."""
    from lungcad.detection.second_stage import keep_apart
    from lungcad.findings import Finding

    frame = candidates.assign(score=np.asarray(score, float))
    out = []
    for path, group in frame.groupby("path", sort=False):
        marks = [Finding(r.x, r.y, r.radius_mm, r.score) for r in group.itertuples()]
        out += [{"path": path, "x": m.x, "y": m.y, "radius_mm": m.radius_mm, "score": m.score,
                 "frame_size": SIZE} for m in keep_apart(marks, MM, FINAL_MIN_MM, PEAKS)]
    return pd.DataFrame(out)


def main(argv=None) -> int:
    from lungcad.data.manifest import Manifest
    from lungcad.evaluation import froc
    from lungcad.training.two_stage import candidate_hits

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage1", type=Path, required=True, help="a detector experiment run")
    parser.add_argument("--dataset", type=Path, default=Path("../shared/data/jsrt"))
    parser.add_argument("--split", type=Path, default=Path("splits/jsrt-nodule-10fold.json"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--classifier", choices=["cnn", "lite0"], default="cnn")
    parser.add_argument("--negatives", choices=["hard", "random"], default="hard")
    parser.add_argument("--synthetic-copies", type=int, default=2)
    parser.add_argument("--candidates", type=int, default=30)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--blobs", type=int, default=0,
                        help="blob candidates added per image to stage 1's (0: none)")
    parser.add_argument("--blob-file", type=Path, default=None,
                        help="the blob candidates of every image, if computed already (e.g. "
                             "candidates-dot.csv of studies/candidate_recall.py)")
    parser.add_argument("--side", type=int, default=32, help="patch side in pixels")
    parser.add_argument("--context-mm", type=float, nargs="+", default=[24.0, 48.0],
                        help="the patches' fields of view (one channel each)")
    parser.add_argument("--folds", type=int, nargs="*", default=list(range(10)))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bootstrap", type=int, default=2000)
    args = parser.parse_args(argv)

    manifest = Manifest.load(args.dataset)
    labels = pd.read_csv(args.dataset / "labels.csv")
    truth = froc.truth_from_table(labels, manifest.paths)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "args.json").write_text(json.dumps(
        {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, indent=1))
    for k in args.folds:                      # fold by fold: a finished fold is not redone
        done = args.out / f"fold-{k}" / "test_candidates.csv"
        if done.is_file():
            continue
        frame = run_fold(args, k, manifest, truth, lambda m: print(m, flush=True))
        done.parent.mkdir(exist_ok=True)
        frame.to_csv(done.with_suffix(".tmp"), index=False)
        done.with_suffix(".tmp").replace(done)
    parts = [args.out / f"fold-{k}" / "test_candidates.csv" for k in range(10)]
    if not all(p.is_file() for p in parts):
        print(f"{sum(p.is_file() for p in parts)} of 10 folds done; run again to go on")
        return 0
    table = pd.concat([pd.read_csv(p) for p in parts], ignore_index=True)
    variants = {"stage1": table["p1"], "stage2": table["p2"],
                "fused": np.sqrt(table["p1"] * table["p2"]),
                "fused-no-tta": np.sqrt(table["p1"] * table["p2_single"])}
    rows = []
    for name, score in variants.items():
        marks = final_marks(table, score)
        result = froc.froc_analysis(marks, truth, n_bootstrap=args.bootstrap, seed=0)
        folder = args.out / name
        folder.mkdir(exist_ok=True)
        marks.to_csv(folder / "oof_findings.csv", index=False)
        best = marks.groupby("path")["score"].max().reindex(truth.images).fillna(0.0)
        pd.DataFrame({"path": truth.images, "prob_nodule": best.to_numpy()}).to_csv(
            folder / "oof_predictions.csv", index=False)
        (folder / "froc.json").write_text(json.dumps(result, indent=1))
        at = {r["fp_per_image"]: r for r in result["sensitivity_at"]}
        rows.append(f"| {name} | {result['cpm']['value']:.3f} [{result['cpm']['ci_low']:.3f}, "
                    f"{result['cpm']['ci_high']:.3f}] | " + " | ".join(
                        f"{at[r]['sensitivity']:.3f} [{at[r]['ci_low']:.3f}, {at[r]['ci_high']:.3f}]"
                        for r in (1.0, 2.0, 4.0)) + " |")
    hit = candidate_hits(table, truth, SIZE)
    found = len(set(hit[hit >= 0]))
    print(f"candidates: {len(table)} on {table['path'].nunique()} images; {found} of "
          f"{len(truth.nodules)} nodules among them")
    print("| marks by | CPM | sens. at 1 FP/image | at 2 | at 4 |\n|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
