"""The committed split files are consistent, checked without reading any image.

Everything but the last test needs only the split files; the last compares them with the shared
datasets' labels.csv (still no image is read)."""

import re
from collections import Counter
from pathlib import Path

import pytest

from lungcad.data.dedup import NEAR_DUP_THRESHOLD
from lungcad.data.manifest import Manifest
from lungcad.data.splits import PARTS, load_split
from lungcad.data.tasks import get_task

SPLITS = sorted((Path(__file__).resolve().parents[2] / "splits").glob("*.json"))
DATASET = {"jsrt": "jsrt", "iqothnccd": "iqothnccd", "chest-ct": "chest_ct_kaggle"}
EXPECTED = {"jsrt-malignant-10fold.json", "jsrt-nodule-10fold.json", "jsrt-3class-10fold.json",
            "iqothnccd-3class-5fold.json", "iqothnccd-normal-vs-abnormal-5fold.json",
            "chest-ct-4class-5fold.json", "chest-ct-normal-vs-abnormal-5fold.json"}
# a part's share of any class may differ from the whole set's by at most this (a JSRT test part
# holds 20 images, so one image is 0.05)
STRATIFICATION_TOLERANCE = 0.10


def dataset_of(path: Path) -> str:
    return next(v for k, v in DATASET.items() if path.name.startswith(k))


def test_every_expected_split_file_is_committed():
    assert EXPECTED <= {p.name for p in SPLITS}


@pytest.mark.parametrize("path", SPLITS, ids=lambda p: p.name)
def test_header_matches_the_file_name(path):
    split = load_split(path)
    folds = int(re.search(r"-(\d+)fold\.json$", path.name).group(1))
    assert split.n_folds == folds == len(split.folds)
    assert [f["fold"] for f in split.folds] == list(range(folds))
    assert split.seed == 0 and split.val_fraction == 0.2
    assert split.dataset == dataset_of(path)
    task = get_task(split.task)
    assert set(split.labels.values()) == set(task.classes)
    assert split.near_dup_threshold == NEAR_DUP_THRESHOLD


@pytest.mark.parametrize("path", SPLITS, ids=lambda p: p.name)
def test_parts_are_disjoint_cover_everything_and_groups_never_straddle(path):
    split = load_split(path)
    everything = set(split.groups)
    assert set(split.labels) == everything
    tested = []
    for k in range(split.n_folds):
        parts = {n: split.part(k, n) for n in PARTS}
        sets = {n: set(v) for n, v in parts.items()}
        assert all(len(parts[n]) == len(sets[n]) for n in PARTS), "a path listed twice in a part"
        assert sum(map(len, parts.values())) == len(set().union(*sets.values())), "parts overlap"
        assert set().union(*sets.values()) == everything
        where = {p: n for n, ps in sets.items() for p in ps}
        part_of_group: dict[str, set] = {}
        for p, g in split.groups.items():
            part_of_group.setdefault(g, set()).add(where[p])
        straddling = [g for g, ps in part_of_group.items() if len(ps) > 1]
        assert not straddling, f"fold {k}: groups {straddling[:3]} straddle parts"
        rest = len(parts["train"]) + len(parts["val"])
        assert abs(len(parts["val"]) / rest - split.val_fraction) < 0.05
        tested += parts["test"]
    assert sorted(tested) == sorted(everything)  # each image is tested exactly once


@pytest.mark.parametrize("path", SPLITS, ids=lambda p: p.name)
def test_every_part_is_stratified(path):
    split = load_split(path)
    overall = Counter(split.labels.values())
    n = len(split.labels)
    for k in range(split.n_folds):
        for name in PARTS:
            part = split.part(k, name)
            counts = Counter(split.labels[p] for p in part)
            for c in overall:
                assert abs(counts[c] / len(part) - overall[c] / n) < STRATIFICATION_TOLERANCE, \
                    (k, name, c)


@pytest.mark.parametrize("path", SPLITS, ids=lambda p: p.name)
def test_grouping_record_agrees_with_the_groups(path):
    split = load_split(path)
    g = split.grouping
    sizes = Counter(Counter(split.groups.values()).values())
    assert g["groups"] == len(set(split.groups.values()))
    assert g["largest_group"] == max(sizes)
    assert {int(s): c for s, c in g["group_sizes"].items()} == dict(sizes)
    assert {"exact pixel hash", "perceptual hash"} <= set(g["methods"])
    # every multi-image group comes from duplicates (no dataset here has a group column)
    assert sum(c for s, c in sizes.items() if s > 1) <= g["exact_duplicate_groups"] + g["near_duplicate_groups"]


@pytest.mark.parametrize("path", SPLITS, ids=lambda p: p.name)
def test_split_matches_the_shared_manifest(path, shared_data):
    split = load_split(path)
    manifest = Manifest.load(shared_data / dataset_of(path))
    assert split.manifest_sha256 == manifest.sha256()
    mapped = get_task(split.task).map_labels(manifest.table["label"])
    expected = {p: c for p, c in zip(manifest.table["path"], mapped) if c is not None}
    assert split.labels == expected  # exactly the task's rows, each with its task class
