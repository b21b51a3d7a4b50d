"""Splits as data: a JSON file naming, for each fold, the train, val and test paths.

Folds are stratified by the task's class and grouped so that no group (a ``group`` column, exact
duplicates, near-duplicates: :mod:`lungcad.data.dedup`) straddles two parts. Fold k's ``test`` is
its held-out part; ``train`` and ``val`` partition the rest, again grouped and stratified.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lungcad.data.dedup import HASH_METHOD, NEAR_DUP_THRESHOLD, find_duplicates, hash_images
from lungcad.data.manifest import Manifest
from lungcad.data.tasks import get_task
from lungcad.errors import LungcadError

SPLIT_FORMAT = "lungcad-split/1"
PARTS = ("train", "val", "test")


@dataclass
class Split:
    folds: list[dict]
    task: str
    n_folds: int
    manifest_sha256: str
    seed: int = 0
    val_fraction: float = 0.2
    dataset: str = ""
    grouping: dict = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)

    def part(self, fold: int, name: str) -> list[str]:
        if name not in PARTS:
            raise LungcadError(f"unknown split part {name!r}; parts are {', '.join(PARTS)}")
        if not 0 <= fold < self.n_folds:
            raise LungcadError(f"fold {fold} does not exist; this split has folds 0..{self.n_folds - 1}")
        return list(self.folds[fold][name])

    def to_dict(self) -> dict:
        return {"format": SPLIT_FORMAT, "dataset": self.dataset, "manifest_sha256": self.manifest_sha256,
                "task": self.task, "seed": self.seed, "n_folds": self.n_folds,
                "val_fraction": self.val_fraction, "grouping": self.grouping, "groups": self.groups,
                "folds": self.folds}

    def save(self, path: str | Path) -> Path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return out

    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


def load_split(path: str | Path) -> Split:
    p = Path(path)
    if not p.is_file():
        raise LungcadError(f"split file not found: {p} (make one with `lungcad data split`)")
    try:
        d = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LungcadError(f"{p}: not a JSON split file ({exc})") from None
    if not isinstance(d, dict) or d.get("format") != SPLIT_FORMAT:
        raise LungcadError(f"{p}: not a lungcad split (expected format {SPLIT_FORMAT!r})")
    try:
        folds = d["folds"]
        for k, fold in enumerate(folds):
            missing = [name for name in PARTS if name not in fold]
            if missing:
                raise LungcadError(f"{p}: fold {k} lacks the part(s) {missing}")
        return Split(folds=folds, task=d["task"], n_folds=int(d["n_folds"]),
                     manifest_sha256=d["manifest_sha256"], seed=int(d.get("seed", 0)),
                     val_fraction=float(d.get("val_fraction", 0.2)), dataset=d.get("dataset", ""),
                     grouping=d.get("grouping", {}), groups=d.get("groups", {}))
    except KeyError as exc:
        raise LungcadError(f"{p}: missing field {exc}") from None


def dataset_groups(manifest: Manifest, threshold: int = NEAR_DUP_THRESHOLD, workers: int = 2):
    """Group id per manifest row (explicit groups, exact and near duplicates), plus the details."""
    hashes = hash_images([manifest.image_path(p) for p in manifest.paths], workers=workers)
    unreadable = [(manifest.paths[i], h.error) for i, h in enumerate(hashes) if h.error]
    explicit = manifest.table["group"].tolist() if "group" in manifest.table.columns else None
    dups = find_duplicates(hashes, threshold, explicit)
    return hashes, dups, unreadable


def _stratified_group_parts(labels: np.ndarray, groups: np.ndarray, n_splits: int, seed: int):
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = len(set(groups.tolist()))
    if n_groups < n_splits:
        raise LungcadError(f"only {n_groups} independent groups, too few for {n_splits} parts; "
                           "use fewer folds")
    return list(StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
                .split(np.zeros(len(labels)), labels, groups))


def make_split(manifest: Manifest, task_name: str, n_folds: int = 10, val_fraction: float = 0.2,
               seed: int = 0, threshold: int = NEAR_DUP_THRESHOLD, workers: int = 2,
               dataset_label: str | None = None) -> tuple[Split, list[str]]:
    """A grouped, stratified k-fold split; returns it with warnings (label conflicts)."""
    task = get_task(task_name)
    if n_folds < 2:
        raise LungcadError("a split needs at least 2 folds")
    if not 0 < val_fraction < 0.5:
        raise LungcadError("--val-fraction must be between 0 and 0.5")
    task.check_labels(manifest.table["label"])
    hashes, dups, unreadable = dataset_groups(manifest, threshold, workers)
    if unreadable:
        names = ", ".join(p for p, _ in unreadable[:5])
        raise LungcadError(f"{len(unreadable)} image(s) cannot be read ({names}); "
                           "run `lungcad data check` and fix or remove them first")
    mapped = task.map_labels(manifest.table["label"])
    keep = np.flatnonzero(mapped.notna().to_numpy())
    paths = np.array(manifest.paths)[keep]
    labels = np.array([task.classes.index(c) for c in mapped.iloc[keep]])
    group_ids = np.array(dups.group_of)[keep]
    warnings = []
    for members in dups.exact_groups:
        found = sorted(set(manifest.table["label"].iloc[members]))
        if len(found) > 1:
            warnings.append("label conflict: identical pixels under labels "
                            f"{found}: {', '.join(manifest.paths[i] for i in members)}")
    folds = []
    for k, (rest, test) in enumerate(_stratified_group_parts(labels, group_ids, n_folds, seed)):
        inner = _stratified_group_parts(labels[rest], group_ids[rest], max(2, round(1 / val_fraction)),
                                        seed + 1 + k)
        train_i, val_i = inner[0]
        folds.append({"fold": k, "train": sorted(paths[rest][train_i].tolist()),
                      "val": sorted(paths[rest][val_i].tolist()), "test": sorted(paths[test].tolist())})
    sizes = np.bincount(np.unique(group_ids, return_inverse=True)[1])
    grouping = {
        "explicit_group_column": "group" in manifest.table.columns,
        "exact": "MD5 of decoded pixels", "near": HASH_METHOD, "near_threshold": threshold,
        "exact_duplicate_groups": len(dups.exact_groups), "near_duplicate_groups": len(dups.near_groups),
        "near_duplicate_pairs": dups.near_pairs, "groups": int(len(sizes)),
        "largest_group": int(sizes.max()), "multi_image_groups": int((sizes > 1).sum()),
    }
    split = Split(folds=folds, task=task.name, n_folds=n_folds, manifest_sha256=manifest.sha256(),
                  seed=seed, val_fraction=val_fraction, dataset=dataset_label or manifest.root.name,
                  grouping=grouping,
                  groups={p: f"g{int(g)}" for p, g in zip(paths.tolist(), group_ids.tolist())})
    return split, warnings
