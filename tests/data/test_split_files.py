"""The committed split files are consistent, checked without reading any image."""

import json
from pathlib import Path

import pandas as pd
import pytest

from lungcad.data.manifest import Manifest
from lungcad.data.splits import load_split
from lungcad.data.tasks import get_task

SPLITS = sorted((Path(__file__).resolve().parents[2] / "splits").glob("*.json"))
DATASET = {"jsrt": "jsrt", "iqothnccd": "iqothnccd", "chest-ct": "chest_ct_kaggle"}


def dataset_of(path: Path) -> str:
    return next(v for k, v in DATASET.items() if path.name.startswith(k))


def test_there_are_split_files():
    assert len(SPLITS) >= 7


@pytest.mark.parametrize("path", SPLITS, ids=lambda p: p.name)
def test_parts_are_disjoint_and_groups_never_straddle(path):
    split = load_split(path)
    everything = set(split.groups)
    tests = []
    for k in range(split.n_folds):
        parts = {n: split.part(k, n) for n in ("train", "val", "test")}
        sets = {n: set(v) for n, v in parts.items()}
        assert sum(map(len, parts.values())) == len(set().union(*sets.values())), "overlap"
        assert set().union(*sets.values()) == everything
        where = {p: n for n, ps in sets.items() for p in ps}
        by_group: dict[str, set] = {}
        for p, g in split.groups.items():
            by_group.setdefault(g, set()).add(where[p])
        assert all(len(v) == 1 for v in by_group.values())
        tests += parts["test"]
    assert sorted(tests) == sorted(everything)  # each image is tested exactly once


@pytest.mark.parametrize("path", SPLITS, ids=lambda p: p.name)
def test_split_matches_the_shared_manifest(path, shared_data):
    split = load_split(path)
    manifest = Manifest.load(shared_data / dataset_of(path))
    assert split.manifest_sha256 == manifest.sha256()
    task = get_task(split.task)
    mapped = task.map_labels(manifest.table["label"])
    assert set(split.groups) == set(manifest.table["path"][mapped.notna()])
    classes = dict(zip(manifest.table["path"], mapped))
    overall = pd.Series(list(classes[p] for p in split.groups)).value_counts(normalize=True)
    for k in range(split.n_folds):
        share = pd.Series([classes[p] for p in split.part(k, "test")]).value_counts(normalize=True)
        for c in task.classes:  # stratified: each class's share within 15 points in every test fold
            assert abs(share.get(c, 0) - overall[c]) < 0.15, (k, c)
