"""Out-of-distribution figures of the bundled models' domain checks.

For each model directory and the experiment it was made from (its folds):

- **own, out of fold**: each training image scored by a reference fitted without its fold (the
  scores the stored threshold was set on);
- **far OOD**: radiograph models on every shared CT slice; CT models on the JSRT radiographs;
- **near OOD**: each CT model on the other CT dataset;
- **corrupted own images**: each out-of-fold image with Gaussian noise (sd 0.1), a Gaussian blur
  (sd 2% of the image side), a 90 degree rotation, or inverted grey levels, scored by the
  reference of the folds that never saw it.

For each: ROC AUC of the score (own out-of-fold images = negatives), the share flagged at the
stored threshold, and for far OOD the share the modality check refuses first. Also the ECE
before / after calibration from model.json.

    python studies/domain_ood.py --out runs/calibration/ood.json \
        src/lungcad/bundled/jsrt-malignant=runs/calibration/jsrt-malignant-heatmap ...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from lungcad.domain.descriptors import describe  # noqa: E402
from lungcad.domain.fit import _experiment, training_images  # noqa: E402
from lungcad.domain.modality import decide, probabilities, typicality  # noqa: E402
from lungcad.domain.reference import DomainReference, fit_with_threshold, fit_reference  # noqa: E402
from lungcad.io import load_image  # noqa: E402

DATASETS = {"jsrt": "radiograph", "iqothnccd": "ct", "chest_ct_kaggle": "ct"}


def corrupt(image: np.ndarray, kind: str, rng) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    if kind == "noise":
        return np.clip(image + rng.normal(0, 0.1, image.shape), 0, 1).astype(np.float32)
    if kind == "blur":
        return gaussian_filter(image, 0.02 * max(image.shape)).astype(np.float32)
    if kind == "rotate90":
        return np.ascontiguousarray(np.rot90(image)).astype(np.float32)
    if kind == "invert":
        return (1.0 - image).astype(np.float32)
    raise ValueError(kind)


def auc(negatives: np.ndarray, positives: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.zeros(len(negatives)), np.ones(len(positives))]
    return float(roc_auc_score(y, np.r_[negatives, positives]))


def dataset_descriptors(data: Path, name: str, size: int, cache: dict) -> np.ndarray:
    key = (name, size)
    if key not in cache:
        table = pd.read_csv(data / name / "labels.csv")
        cache[key] = np.stack([describe(load_image(data / name / p).array, size)
                               for p in table["path"]])
    return cache[key]


def evaluate_model(model_dir: Path, exp_dir: Path, data: Path, cache: dict) -> dict:
    spec = json.loads((model_dir / "model.json").read_text())
    reference = DomainReference.load(model_dir / spec["domain"]["file"])
    meta, config = _experiment(exp_dir, finished=False)
    manifest, paths, folds = training_images(meta, config)
    own_name = Path(str(manifest.root)).name
    size = reference.size
    images = [load_image(manifest.image_path(p)).array for p in paths]
    x = np.stack([describe(im, size) for im in images])
    _, oof = fit_with_threshold(x, folds, size, reference.quantile)
    result = {"model": spec["name"], "modality": spec["domain"]["modality"], "size": size,
              "threshold": reference.threshold,
              "own_out_of_fold": {"n": len(oof), "flagged": float(np.mean(oof > reference.threshold))},
              "far": {}, "near": {}, "corrupted": {}}
    for other, modality in DATASETS.items():
        if other == own_name:
            continue
        scores = reference.score(dataset_descriptors(data, other, size, cache))
        entry = {"n": len(scores), "auroc": auc(oof, scores),
                 "flagged": float(np.mean(scores > reference.threshold))}
        if modality != result["modality"]:
            x = dataset_descriptors(data, other, 224, cache)
            answers = [decide(p, t) for p, t in zip(probabilities(x), typicality(x))]
            entry["refused_by_modality"] = float(np.mean([a == (modality, True)
                                                          for a in answers]))
            result["far"][other] = entry
        else:
            result["near"][other] = entry
    rng = np.random.default_rng(0)
    fold_refs = {f: fit_reference(x[folds != f], size) for f in np.unique(folds)}
    for f, ref in fold_refs.items():  # the stored part scales, so scores match the threshold
        ref.part_scales = reference.part_scales
    for kind in ("noise", "blur", "rotate90", "invert"):
        scores = np.array([fold_refs[f].score(describe(corrupt(im, kind, rng), size)[None])[0]
                           for im, f in zip(images, folds)])
        result["corrupted"][kind] = {"n": len(scores), "auroc": auc(oof, scores),
                                     "flagged": float(np.mean(scores > reference.threshold))}
    cal = spec.get("calibration")
    if cal:
        result["calibration"] = {k: cal[k] for k in ("method", "ece_before",
                                                     "ece_after_out_of_fold", "brier_before",
                                                     "brier_after_out_of_fold")}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", nargs="+", metavar="MODEL_DIR=EXPERIMENT_DIR")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get(
        "LUNGCAD_SHARED_DATA", ROOT.parent / "shared" / "data")))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    cache: dict = {}
    results = []
    for pair in args.pairs:
        start = time.time()
        model_dir, exp_dir = pair.split("=", 1)
        result = evaluate_model(Path(model_dir), Path(exp_dir), args.data, cache)
        result["seconds"] = round(time.time() - start, 1)
        print(json.dumps(result), flush=True)
        results.append(result)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
