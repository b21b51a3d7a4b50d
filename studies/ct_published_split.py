"""The chest CT set's published split as a lungcad split file (one fold), deduplicated.

Protocol 2 of the CT results (docs/results.md): train on the set's published ``train`` images,
test on its published ``valid`` images, with every ``valid`` image removed that duplicates a
``train`` image (same group in the committed 5-fold split, which groups pixel-identical and
perceptual-hash near-duplicate images), and one image kept per pixel-identical group inside
``valid``. The fold's validation part is a class-stratified fifth of the ``train`` groups
(StratifiedGroupKFold, seed 0); nothing is tuned on the test part.

    python studies/ct_published_split.py --dataset ../shared/data/chest_ct_kaggle \
        --groups-from splits/chest-ct-4class-5fold.json \
        --out splits/published/chest-ct-4class-published.json
    lungcad experiment configs/chest-ct-4class-linear-probe.yaml \
        --split splits/published/chest-ct-4class-published.json --out runs/chest4-published

The file is written outside ``splits/*.json`` on purpose: the committed k-fold files there are
checked as partitions of the whole set, and this one is not (the removed duplicates are in no
test part). ``tests/data/test_published_split.py`` checks it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def published_split(labels: pd.DataFrame, committed, task: str, seed: int = 0,
                    val_fraction: float = 0.2):
    """(Split, counts) for the published train/valid split of ``labels`` (chest CT labels.csv)."""
    from sklearn.model_selection import StratifiedGroupKFold

    from lungcad.data.splits import Split

    groups = committed.groups
    classes = committed.labels
    train = labels[labels["split"] == "train"]
    valid = labels[labels["split"] == "valid"]
    train_groups = {groups[p] for p in train["path"]}
    train_md5 = set(train["pixel_md5"])
    clean = valid[~valid["path"].map(groups).isin(train_groups)
                  & ~valid["pixel_md5"].isin(train_md5)]
    test = clean.drop_duplicates("pixel_md5")
    n_splits = max(2, round(1 / val_fraction))
    folds = StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed)
    tr_paths = train["path"].to_numpy()
    _, val_idx = next(folds.split(tr_paths, train["path"].map(classes).to_numpy(),
                                  train["path"].map(groups).to_numpy()))
    val = set(tr_paths[val_idx])
    fold = {"fold": 0, "train": sorted(p for p in tr_paths if p not in val),
            "val": sorted(val), "test": sorted(test["path"])}
    kept = set(fold["train"]) | val | set(fold["test"])
    grouping = {**committed.grouping,
                "protocol": "published train/valid split; valid deduplicated against train "
                            "(same group or pixel content) and within itself (pixel content)"}
    split = Split(folds=[fold], task=task, n_folds=1, manifest_sha256=committed.manifest_sha256,
                  seed=seed, val_fraction=val_fraction, dataset=committed.dataset,
                  grouping=grouping, groups={p: groups[p] for p in sorted(kept)},
                  labels={p: classes[p] for p in sorted(kept)})
    counts = {"train": len(fold["train"]), "val": len(fold["val"]), "valid": len(valid),
              "valid_not_in_train": len(clean), "test": len(fold["test"])}
    return split, counts


def main(argv: list[str] | None = None) -> int:
    from lungcad.data.splits import load_split

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--groups-from", required=True,
                        help="the committed split file of the same dataset and task")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    committed = load_split(args.groups_from)
    labels = pd.read_csv(Path(args.dataset) / "labels.csv")
    split, counts = published_split(labels, committed, committed.task, args.seed)
    split.save(args.out)
    print(f"{args.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
