"""A second stage for the nodule detector, cross-validated: does re-ranking the first stage's
candidates with more information find more nodules for the same false marks?

Candidates: each image's 30 strongest local maxima (at least 10 mm apart, inside the dilated
`jsrt-lungs` mask) of the flip-averaged nodule map of the fold model that never trained on the
image (the fold models of ``lungcad experiment configs/jsrt-nodule-heatmap-detector.yaml``).
Each is labelled by the FROC hit rule (radius + 5 mm). Features:

- stage 1: the candidate's score (logit), its rank in the image, its radius and malignancy;
- geometry: signed depth in the lung mask (mm), position in the lungs' bounding box, side;
- patch: frozen ImageNet EfficientNet-Lite0 (global average of its last feature map) on 48 and
  96 px patches around the candidate, resized to 192 px.

The second stage of fold k is fitted on the candidates of the other nine folds' images only and
re-scores fold k's candidates; the marks are then the strongest re-scored candidates, at least
20 mm apart, 10 an image (the bundled detector's settings), scored by FROC with 2,000
bootstrap resamples of images. Every variant is reported; none is chosen here.

    python studies/detector_second_stage.py --run runs/s5/heatmap-detector-flip \
        --dataset ../shared/data/jsrt --out runs/s5/stage2

The candidates and patch features are cached in ``--out`` (about 6 min on the 2-core CPU the
first time).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

CANDIDATES = {"peaks": 30, "min_distance_mm": 10.0}
PATCH_SIDES = (48, 96)
PATCH_INPUT = 192
FINAL_MIN_MM, FINAL_PEAKS = 20.0, 10


def _logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def candidates(run: Path, dataset: Path, oof: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Out-of-fold candidates with their geometry and hit labels (``nodule`` >= 0: a hit)."""
    from scipy import ndimage

    import lungcad
    from lungcad.evaluation import froc
    from lungcad.io import load_image

    rows = []
    for fold in sorted(oof["fold"].unique()):
        model = lungcad.load_model(run / f"fold-{fold}" / "model")
        for path in oof["path"][oof["fold"] == fold]:
            image = load_image(dataset / path).array
            detection = model.detect(image, marks=CANDIDATES)
            mask = detection.lung_mask
            depth = (ndimage.distance_transform_edt(mask)
                     - ndimage.distance_transform_edt(~mask)) * detection.mm_per_pixel
            ys, xs = np.nonzero(mask)
            for rank, f in enumerate(detection.findings):
                r = int(np.clip(round(f.y), 0, image.shape[0] - 1))
                c = int(np.clip(round(f.x), 0, image.shape[1] - 1))
                rows.append({"path": path, "fold": fold, "x": f.x, "y": f.y,
                             "radius_mm": f.radius_mm, "score": f.score,
                             "malignancy": f.malignancy, "rank": rank,
                             "frame_size": image.shape[1], "lung_depth_mm": depth[r, c],
                             "rel_x": (f.x - xs.min()) / max(1, xs.max() - xs.min()),
                             "rel_y": (f.y - ys.min()) / max(1, ys.max() - ys.min()),
                             "right_of_centre": float(f.x > image.shape[1] / 2)})
        print(f"candidates: fold {fold} done ({len(rows)} so far)", flush=True)
    table = pd.DataFrame(rows)
    truth = froc.truth_from_table(labels, oof["path"].tolist())
    marks = froc.validate_findings(table[["path", "x", "y", "radius_mm", "score", "frame_size"]])
    table["nodule"] = froc.match(froc.normalise_paths(marks, truth), truth).mark_nodule
    return table


def patch_features(table: pd.DataFrame, dataset: Path) -> np.ndarray:
    """(N, 1280 * len(PATCH_SIDES)) frozen ImageNet Lite0 features of the candidates' patches."""
    import torch

    from lungcad.io import load_image
    from lungcad.models.efficientnet_lite import LITE_MEAN, LITE_STD, build_lite0_backbone

    network = build_lite0_backbone(1, True).eval()
    out = np.zeros((len(table), 1280 * len(PATCH_SIDES)), np.float32)
    pad = max(PATCH_SIDES)
    with torch.inference_mode():
        for path, group in table.groupby("path", sort=False):
            padded = np.pad(load_image(dataset / path).array.astype(np.float32), pad,
                            mode="reflect")
            for k, side in enumerate(PATCH_SIDES):
                crops = [padded[int(round(y)) + pad - side // 2:int(round(y)) + pad + side // 2,
                                int(round(x)) + pad - side // 2:int(round(x)) + pad + side // 2]
                         for x, y in zip(group["x"], group["y"])]
                batch = torch.nn.functional.interpolate(
                    torch.from_numpy(np.stack(crops)[:, None]), size=(PATCH_INPUT, PATCH_INPUT),
                    mode="bilinear", align_corners=False)
                features = network.extract_features((batch - LITE_MEAN) / LITE_STD)
                out[group.index.to_numpy(), k * 1280:(k + 1) * 1280] = \
                    features.mean(dim=(2, 3)).numpy()
    return out


def final_marks(table: pd.DataFrame, scores: np.ndarray) -> pd.DataFrame:
    """Per image the strongest candidates by ``scores``, FINAL_MIN_MM apart, FINAL_PEAKS of them."""
    from lungcad.jsrt_geometry import jsrt_mm_per_pixel

    kept_rows = []
    frame = table.assign(score=scores)
    for _, group in frame.groupby("path", sort=False):
        mm = jsrt_mm_per_pixel(int(group["frame_size"].iloc[0]))
        kept: list = []
        for row in group.sort_values("score", ascending=False).itertuples():
            if all(np.hypot(row.x - k.x, row.y - k.y) * mm >= FINAL_MIN_MM for k in kept):
                kept.append(row)
            if len(kept) == FINAL_PEAKS:
                break
        kept_rows += [k._asdict() for k in kept]
    return pd.DataFrame(kept_rows)[["path", "x", "y", "radius_mm", "score", "frame_size"]]


def cross_fitted(make, features: np.ndarray, y: np.ndarray, folds: np.ndarray) -> np.ndarray:
    scores = np.zeros(len(y))
    for fold in np.unique(folds):
        test = folds == fold
        scores[test] = make().fit(features[~test], y[~test]).predict_proba(features[test])[:, 1]
    return scores


def variants(n_geometry: int, n_patch: int) -> dict:
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import PCA
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def logistic():
        return LogisticRegression(C=0.1, class_weight="balanced", max_iter=2000)

    geometry = list(range(n_geometry))
    patch = list(range(n_geometry, n_geometry + n_patch))
    pca = make_pipeline(StandardScaler(), PCA(32, random_state=0))
    return {
        "A: logistic regression on stage 1 + geometry":
            (geometry, lambda: make_pipeline(StandardScaler(), logistic())),
        "B: logistic regression on the patch features (PCA 32)":
            (patch, lambda: make_pipeline(StandardScaler(), PCA(32, random_state=0), logistic())),
        "C: logistic regression on stage 1 + geometry + patch PCA 32":
            (geometry + patch, lambda: make_pipeline(ColumnTransformer([
                ("g", StandardScaler(), geometry), ("p", pca, patch)]), logistic())),
        "D: gradient boosting on stage 1 + geometry":
            (geometry, lambda: HistGradientBoostingClassifier(
                max_depth=3, learning_rate=0.05, max_iter=200, random_state=0)),
    }


def main(argv=None) -> int:
    from lungcad.evaluation import froc

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="detector experiment folder")
    parser.add_argument("--dataset", type=Path, required=True, help="folder with labels.csv")
    parser.add_argument("--out", type=Path, required=True, help="cache and results folder")
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    oof = pd.read_csv(args.run / "oof_predictions.csv")
    labels = pd.read_csv(args.dataset / "labels.csv")
    started = time.monotonic()
    table_file, patch_file = args.out / "candidates.csv", args.out / "patch_features.npy"
    if not table_file.is_file():
        candidates(args.run, args.dataset, oof, labels).to_csv(table_file, index=False)
    table = pd.read_csv(table_file)
    if not patch_file.is_file():
        np.save(patch_file, patch_features(table, args.dataset))
    patches = np.load(patch_file)
    truth = froc.truth_from_table(labels, oof["path"].tolist())
    print(f"{len(table)} candidates on {table['path'].nunique()} images "
          f"({time.monotonic() - started:.0f} s to make or read them); "
          f"{int((table['nodule'] >= 0).sum())} hit a nodule; "
          f"{table['nodule'][table['nodule'] >= 0].nunique()} of the {len(truth.nodules)} "
          "nodules are among the candidates", flush=True)

    y = (table["nodule"] >= 0).to_numpy().astype(int)
    folds = table["fold"].to_numpy()
    geometry = np.column_stack([
        _logit(table["score"]), table["rank"], table["radius_mm"],
        _logit(table["malignancy"].fillna(0.5)), table["lung_depth_mm"], table["rel_x"],
        table["rel_y"], table["right_of_centre"]])
    features = np.hstack([geometry, patches])
    scored = {"stage 1 alone (the same candidates, no second stage)": table["score"].to_numpy()}
    for name, (columns, make) in variants(geometry.shape[1], patches.shape[1]).items():
        scored[name] = cross_fitted(make, features[:, columns], y, folds)
    for name, scores in scored.items():
        result = froc.froc_analysis(final_marks(table, scores), truth,
                                    n_bootstrap=args.bootstrap, seed=0)
        at = {r["fp_per_image"]: r["sensitivity"] for r in result["sensitivity_at"]}
        cpm = result["cpm"]
        print(f"{name}: CPM {cpm['value']:.3f} [{cpm['ci_low']:.3f}, {cpm['ci_high']:.3f}]; "
              f"sensitivity at 1, 2, 4, 8 FP/image {at[1]:.3f}, {at[2]:.3f}, {at[4]:.3f}, "
              f"{at[8]:.3f}", flush=True)
    print(f"total {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
