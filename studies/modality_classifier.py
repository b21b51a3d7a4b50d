"""Train the radiograph-vs-CT classifier that ships in ``src/lungcad/domain/`` and report its
grouped cross-validated accuracy.

Data: the shared JSRT radiographs (one image per patient) against both shared CT sets
(IQ-OTH/NCCD and the Kaggle chest CT), each image described by
:func:`lungcad.domain.descriptors.describe` on a 224 px grid. Cross-validation: 5 folds with
near-duplicate groups kept together (the CT sets' ``dup_group``; otherwise each image its own
group), and a leave-one-dataset-out check (train on JSRT + one CT set, test on the other CT
set). The shipped model is then fitted on all images.

    python studies/modality_classifier.py [--data ../shared/data] \
        [--write src/lungcad/domain/modality_classifier.json]
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
from lungcad.domain.descriptors import N_DESCRIPTORS, describe  # noqa: E402
from lungcad.io import load_image  # noqa: E402

SIZE = 224
DATASETS = {"jsrt": "radiograph", "iqothnccd": "ct", "chest_ct_kaggle": "ct"}


def load(data: Path):
    rows, groups, labels, names = [], [], [], []
    for name, modality in DATASETS.items():
        table = pd.read_csv(data / name / "labels.csv")
        dup = table["dup_group"] if "dup_group" in table else pd.Series([np.nan] * len(table))
        for path, group in zip(table["path"], dup):
            rows.append(describe(load_image(data / name / path).array, SIZE))
            groups.append(f"{name}:{group}" if isinstance(group, str) or pd.notna(group)
                          else f"{name}:{path}")
            labels.append(1 if modality == "ct" else 0)
            names.append(name)
    return np.stack(rows), np.array(labels), np.array(groups), np.array(names)


def model():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=5000))


def main() -> None:
    from sklearn.model_selection import GroupKFold

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get(
        "LUNGCAD_SHARED_DATA", ROOT.parent / "shared" / "data")))
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    start = time.time()
    x, y, groups, names = load(args.data)
    predicted = np.zeros(len(y))
    for train, test in GroupKFold(5).split(x, y, groups):
        predicted[test] = model().fit(x[train], y[train]).predict_proba(x[test])[:, 1]
    correct = (predicted >= 0.5) == (y == 1)
    report = {"cv": "5-fold GroupKFold, near-duplicate groups together",
              "cv_accuracy": float(correct.mean()), "cv_errors": int((~correct).sum()),
              "n_images": int(len(y)),
              "per_dataset_accuracy": {n: float(correct[names == n].mean()) for n in DATASETS},
              "cv_refusable_errors": int(((~correct) & (np.maximum(predicted, 1 - predicted)
                                                        >= 0.98)).sum())}
    for held in ("iqothnccd", "chest_ct_kaggle"):
        fit = model().fit(x[names != held], y[names != held])
        report[f"accuracy_{held}_held_out_dataset"] = float((fit.predict(x[names == held]) == 1).mean())
    final = model().fit(x, y)
    scaler, logistic = final.steps[0][1], final.steps[1][1]
    report["seconds"] = round(time.time() - start, 1)
    print(json.dumps(report, indent=2))
    if args.write:
        shipped = {"format": "lungcad-modality/1", "size": SIZE, "n_descriptors": N_DESCRIPTORS,
                   "classes": ["radiograph", "ct"],
                   "trained_on": "shared JSRT (198 radiographs), IQ-OTH/NCCD (1,097 CT slices), "
                                 "Kaggle chest CT (685 CT slices)",
                   "method": "logistic regression (C=0.1) on standardised image descriptors",
                   **{k: v for k, v in report.items() if k != "seconds"},
                   "mean": scaler.mean_.round(8).tolist(), "scale": scaler.scale_.round(8).tolist(),
                   "coef": logistic.coef_[0].round(8).tolist(),
                   "intercept": float(logistic.intercept_[0])}
        args.write.write_text(json.dumps(shipped) + "\n")
        print(f"wrote {args.write} ({args.write.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
