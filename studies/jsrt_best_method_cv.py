"""10-fold cross-validation of ``nodule-heatmap-lite0`` on JSRT, both tasks from one training.

Protocol (one image per patient in JSRT, so image-level folds are patient-level):

- test folds: the committed split file (--split, its ``test`` parts) or, without one,
  ``StratifiedKFold(10, shuffle=True, random_state=0)`` on the 3-class label (malignant / benign /
  non_nodule), which stratifies both tasks at once;
- inside each fold's remaining images: the split's train/val parts, or a stratified 1/9 held
  out as validation (``StratifiedShuffleSplit(random_state=fold)``); the network is trained on
  the training part with settings fixed beforehand (the config), and the validation part only
  picks the decision threshold (Youden's J);
- the held-out fold is scored once. Out-of-fold predictions go to ``--out`` as one CSV per task
  (path, true_label, prob_<class>..., predicted_label, model, fold + the manifest's columns),
  ready for ``lungcad evaluate``; the summary (AUC, accuracy at the chosen thresholds) prints.

The frozen part's features of all images are computed once (or read from --feature-cache,
written on the first run), because they do not depend on the fold.

    python studies/jsrt_best_method_cv.py --config configs/jsrt-nodule-heatmap.yaml \
        --feature-cache /tmp/jsrt_frozen_512.npz --out /tmp/nh_cv
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

TASKS = ("jsrt-nodule", "jsrt-malignant")


def folds_for(manifest, split_path: str | None, n_folds: int = 10) -> list[dict]:
    from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit

    if split_path:
        from lungcad.data.splits import load_split

        split = load_split(split_path)
        return [{"fold": k, "train": split.part(k, "train"), "val": split.part(k, "val"),
                 "test": split.part(k, "test")} for k in range(split.n_folds)]
    paths = np.array(manifest.paths)
    labels = manifest.table["label"].astype(str).values
    out = []
    for k, (rest, test) in enumerate(StratifiedKFold(n_folds, shuffle=True, random_state=0)
                                     .split(paths, labels)):
        inner = StratifiedShuffleSplit(1, test_size=1 / 9, random_state=k)
        tr, va = next(inner.split(rest, labels[rest]))
        out.append({"fold": k, "train": paths[rest[tr]].tolist(), "val": paths[rest[va]].tolist(),
                    "test": paths[test].tolist()})
    return out


def feature_cache(manifest, size: int, cache_file: str | None) -> dict:
    from lungcad.models import create_model
    from lungcad.training.nodule_heatmap import ARCHITECTURE, _load_preprocessed, frozen_features

    if cache_file and Path(cache_file).is_file():
        data = np.load(cache_file, allow_pickle=False)
        paths = data["paths"].tolist()
        feats = {k: data[k] for k in ("f8", "f16", "f8_flip", "f16_flip")}
    else:
        network = create_model(ARCHITECTURE, 2, pretrained=True)
        paths = manifest.paths
        feats = frozen_features(network, _load_preprocessed(manifest, paths, size))
        if cache_file:
            np.savez(cache_file, paths=np.array(paths), **{k: v.astype(np.float16) for k, v in feats.items()})
    return {p: {k: feats[k][i] for k in feats} for i, p in enumerate(paths)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/jsrt"))
    parser.add_argument("--config", help="YAML config (trainer settings); defaults otherwise")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value (YAML-parsed), e.g. --set tune_blocks=false")
    parser.add_argument("--split", help="a lungcad split file (default: StratifiedKFold, see above)")
    parser.add_argument("--feature-cache", help=".npz for the frozen features (read or written)")
    parser.add_argument("--folds", type=int, default=None, help="run only the first N folds")
    parser.add_argument("--model-name", default="nodule-heatmap-lite0")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    import torch
    import yaml
    from sklearn.metrics import roc_auc_score

    from lungcad.data.manifest import Manifest
    from lungcad.data.tasks import get_task
    from lungcad.data.splits import FoldView
    from lungcad.training.fit import finish
    from lungcad.training.nodule_heatmap import DEFAULTS, train_tasks

    config = yaml.safe_load(Path(args.config).read_text()) if args.config else {}
    for item in args.set:
        key, value = item.split("=", 1)
        config[key] = yaml.safe_load(value)
    cfg = {**DEFAULTS, **config, "model_args": {**DEFAULTS["model_args"], **config.get("model_args", {})}}
    torch.set_num_threads(int(cfg["torch_threads"]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = Manifest.load(args.data)
    t0 = time.time()
    cache = feature_cache(manifest, int(cfg["image_size"]), args.feature_cache)
    print(f"frozen features ready ({time.time() - t0:.0f} s)", flush=True)
    folds = folds_for(manifest, args.split)[:args.folds]
    rows: dict[str, list] = {t: [] for t in TASKS}
    for f in folds:
        tf = time.time()
        res = train_tasks(manifest, f["train"], f["val"], TASKS, config, feature_cache=cache,
                          score_paths=f["test"],
                          log=lambda m: print(f"  fold {f['fold']} {m}", flush=True))
        for name in TASKS:  # threshold on the fold's validation part, model directory written
            view = FoldView(manifest, get_task(name), f["fold"], len(folds), tuple(f["train"]),
                            tuple(f["val"]), tuple(f["test"]))
            res[name] = finish(res[name], view, out / "runs" / f"fold{f['fold']}" / name,
                               str(cfg["threshold"]))
        test_rows = manifest.rows_for(f["test"])
        for name in TASKS:
            task = get_task(name)
            spec = json.loads((res[name] / "model.json").read_text())
            probs = res["scores"][name]
            frame = pd.DataFrame({"path": f["test"], "true_label": task.map_labels(test_rows["label"]).values})
            frame[f"prob_{task.classes[0]}"] = 1 - probs
            frame[f"prob_{task.classes[1]}"] = probs
            frame["predicted_label"] = np.where(probs >= spec["threshold"], task.classes[1], task.classes[0])
            frame["model"] = args.model_name
            frame["fold"] = f["fold"]
            frame["threshold"] = spec["threshold"]
            meta = test_rows.drop(columns=["path"]).rename(columns={"label": "source_label"})
            rows[name].append(pd.concat([frame, meta.reset_index(drop=True)], axis=1))
        print(f"fold {f['fold']} done ({time.time() - tf:.0f} s)", flush=True)

    summary = {"config": cfg, "n_folds": len(folds), "seconds": round(time.time() - t0)}
    for name in TASKS:
        task = get_task(name)
        frame = pd.concat(rows[name], ignore_index=True)
        frame.to_csv(out / f"{name}_oof.csv", index=False)
        y = (frame["true_label"] == task.classes[1]).astype(int).values
        auc = roc_auc_score(y, frame[f"prob_{task.classes[1]}"]) if len(set(y)) == 2 else float("nan")
        acc = float((frame["predicted_label"] == frame["true_label"]).mean())
        fold_aucs = [roc_auc_score((g["true_label"] == task.classes[1]).astype(int), g[f"prob_{task.classes[1]}"])
                     for _, g in frame.groupby("fold") if g["true_label"].nunique() == 2]
        summary[name] = {"auc_pooled": round(float(auc), 4), "accuracy": round(acc, 4),
                         "auc_fold_mean": round(float(np.mean(fold_aucs)), 4), "n": len(frame)}
        print(f"{name}: pooled out-of-fold AUC {auc:.3f}, mean fold AUC {np.mean(fold_aucs):.3f}, "
              f"accuracy at validation-chosen thresholds {acc:.3f} (n={len(frame)})")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"total {time.time() - t0:.0f} s; wrote {out}")


if __name__ == "__main__":
    main()
