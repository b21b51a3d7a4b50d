"""External validation of a CT linear-probe model: score it on another CT dataset.

Protocol 3 of the CT results (docs/results.md): a normal-vs-abnormal model trained on one CT set
(``lungcad experiment CONFIG --final``, or a bundled model; its threshold was chosen by its
config's rule on the training set's out-of-fold validation predictions) predicts every image of
the OTHER set, at that threshold, unchanged. Nothing is fitted or chosen on the external set.

This is ``lungcad predict MODEL DATASET --out P.csv`` for a linear-probe model, made fast on a
shared CPU: the frozen Lite0 features come from the linear probe's feature cache (the same
preprocessing and network as prediction); only the model's last linear layer and its
calibration map (model.json, where it has one) are applied, as ``lungcad predict`` does.
``--check N`` also runs ``lungcad predict``'s own code on N images and reports the largest
probability difference (it should be ~1e-6).

    python studies/ct_external.py --model runs/chest2-lp/final/model \
        --dataset ../shared/data/iqothnccd --out runs/ext/chest-to-iq.csv --check 32
    lungcad evaluate runs/ext/chest-to-iq.csv --group-column group \
        --groups splits/iqothnccd-normal-vs-abnormal-5fold.json --out runs/ext/report-chest-to-iq
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd


def external_predictions(model_ref: str, dataset: str, check: int = 0) -> tuple[pd.DataFrame, dict]:
    import torch

    from lungcad.data.manifest import Manifest
    from lungcad.data.tasks import get_task
    from lungcad.inference import load_model
    from lungcad.models import logits_to_probs
    from lungcad.training.linear_probe import features_for

    model = load_model(model_ref)
    spec = model.spec
    network = model.network
    if spec.architecture != "efficientnet-lite0" or not spec.architecture_args.get("freeze_backbone"):
        raise SystemExit(f"{model_ref}: not a linear-probe model (use lungcad predict instead)")
    manifest = Manifest.load(dataset)
    task = get_task(spec.task)
    paths = list(manifest.paths)
    feats = torch.from_numpy(features_for(network, manifest, paths, spec.preprocessing,
                                          log=lambda m: print(m, file=sys.stderr)))
    with torch.inference_mode():
        probs = logits_to_probs(network.backbone._fc(feats)).numpy()
    probs = model.calibrate(probs).astype(float)  # model.json's calibration map, as predict does
    if len(spec.classes) == 2:
        predicted = (probs[:, 1] >= float(spec.threshold)).astype(int)
    else:
        predicted = probs.argmax(1)
    frame = pd.DataFrame({"path": paths,
                          "true_label": task.map_labels(manifest.table.set_index("path")
                                                        .loc[paths, "label"].astype(str)).to_numpy()})
    for i, c in enumerate(spec.classes):
        frame[f"prob_{c}"] = probs[:, i]
    frame["predicted_label"] = [spec.classes[k] for k in predicted]
    frame["model"] = f"{spec.name}@external"
    info = {"n": len(frame), "threshold": spec.threshold, "classes": list(spec.classes)}
    if check:
        chosen = paths[:: max(1, len(paths) // check)][:check]
        from lungcad.io import load_image

        ref = np.asarray(model.predict_proba([load_image(manifest.image_path(p)).array
                                              for p in chosen], sources=chosen), dtype=float)
        info["check_max_abs_diff"] = float(np.abs(ref - probs[[paths.index(p) for p in chosen]]).max())
        info["check_n"] = len(chosen)
    return frame, info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model directory or bundled name")
    parser.add_argument("--dataset", required=True, help="the external dataset folder")
    parser.add_argument("--out", required=True, help="predictions CSV to write")
    parser.add_argument("--check", type=int, default=0, metavar="N",
                        help="compare N images with the model's own predict (default 0)")
    args = parser.parse_args(argv)
    start = time.time()
    frame, info = external_predictions(args.model, args.dataset, args.check)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print(f"{args.out}: {info} ({time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
