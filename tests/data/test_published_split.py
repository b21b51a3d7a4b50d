"""splits/published/chest-ct-4class-published.json: the chest CT set's published train/valid
split, its test part deduplicated against train (studies/ct_published_split.py).

The first test reads only the split files; the second regenerates the file from the shared
data's labels.csv and skips, saying why, where that folder is absent."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd

from lungcad.data.splits import load_split

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = ROOT / "splits" / "published" / "chest-ct-4class-published.json"
COMMITTED = ROOT / "splits" / "chest-ct-4class-5fold.json"


def test_published_split_keeps_duplicates_of_train_out_of_test():
    split, committed = load_split(PUBLISHED), load_split(COMMITTED)
    assert split.n_folds == 1 and split.manifest_sha256 == committed.manifest_sha256
    fold = split.folds[0]
    train, val, test = (set(fold[k]) for k in ("train", "val", "test"))
    assert not (train & val or train & test or val & test)
    assert all(p.startswith("images/train/") for p in train | val)
    assert test and all(p.startswith("images/valid/") for p in test)
    # no near-duplicate group of the committed split reaches both training and test
    train_groups = {committed.groups[p] for p in train | val}
    assert not {committed.groups[p] for p in test} & train_groups
    assert set(split.labels[p] for p in train) == set(committed.labels.values())


def test_published_split_is_reproduced_from_the_labels(shared_data):
    spec = importlib.util.spec_from_file_location(
        "ct_published_split", ROOT / "studies" / "ct_published_split.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    labels = pd.read_csv(shared_data / "chest_ct_kaggle" / "labels.csv")
    split, counts = module.published_split(labels, load_split(COMMITTED), "chest-ct-4class")
    assert split.to_dict()["folds"] == json.loads(PUBLISHED.read_text())["folds"]
    assert counts["test"] == 61 and counts["valid"] == 72
    test = labels[labels.path.isin(split.folds[0]["test"])]
    train = labels[labels.split == "train"]
    assert not set(test.pixel_md5) & set(train.pixel_md5) and test.pixel_md5.is_unique
