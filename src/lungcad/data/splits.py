"""Splits as data: a JSON file naming, for each fold, the train, val and test paths.

Folds are stratified by the task's class and grouped so that no group straddles two parts.
Groups join (union-find) the rows that share a ``group`` value, pixel-identical images and
near-duplicate images (:mod:`lungcad.data.dedup`). Fold k's ``test`` is the k-th of K grouped,
stratified parts; ``train`` and ``val`` partition the rest, ``val`` being one of round(1 / F)
grouped, stratified parts of it (F = ``val_fraction``). Rows whose label the task excludes are
left out. Format ``lungcad-split/1``; beyond the shared fields, ``labels`` gives each path's task
class, so a split can be checked without its images.
"""

from __future__ import annotations

import json
import warnings as pywarnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lungcad.data.dedup import (EXACT_HASH, NEAR_DUP_THRESHOLD, PERCEPTUAL_HASH, PHASH_BITS,
                                compute_hashes, group_duplicates)
from lungcad.data.manifest import Manifest
from lungcad.data.tasks import Task, get_task
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
    groups: dict[str, str] = field(default_factory=dict)   # path -> group id
    labels: dict[str, str] = field(default_factory=dict)   # path -> task class

    def part(self, fold: int, name: str) -> list[str]:
        """The paths of part ``name`` (train, val or test) of fold ``fold``."""
        if name not in PARTS:
            raise LungcadError(f"unknown split part {name!r}; parts are {', '.join(PARTS)}")
        if isinstance(fold, bool) or not isinstance(fold, (int, np.integer)) \
                or not 0 <= fold < self.n_folds:
            raise LungcadError(f"fold {fold!r} does not exist; this split has folds "
                               f"0..{self.n_folds - 1}")
        return list(self.folds[fold][name])

    @property
    def paths(self) -> list[str]:
        return list(self.groups)

    @property
    def near_dup_threshold(self) -> int | None:
        value = self.grouping.get("near_dup_threshold")
        return int(value) if value is not None else None

    def to_dict(self) -> dict:
        return {"format": SPLIT_FORMAT, "dataset": self.dataset,
                "manifest_sha256": self.manifest_sha256, "task": self.task, "seed": self.seed,
                "n_folds": self.n_folds, "val_fraction": self.val_fraction,
                "grouping": self.grouping, "groups": self.groups, "labels": self.labels,
                "folds": self.folds}

    def save(self, path: str | Path) -> Path:
        out = Path(path)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        except OSError as exc:
            raise LungcadError(f"cannot write the split file {out}: {exc.strerror or exc}") from exc
        return out


def load_split(path: str | Path) -> Split:
    """Read a split file written by `lungcad data split`; LungcadError if it is not one."""
    p = Path(path)
    if not p.is_file():
        raise LungcadError(f"split file not found: {p} (make one with `lungcad data split`)")
    try:
        d = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LungcadError(f"{p}: not a JSON split file ({exc})") from None
    if not isinstance(d, dict) or d.get("format") != SPLIT_FORMAT:
        raise LungcadError(f"{p}: not a lungcad split file (expected \"format\": {SPLIT_FORMAT!r})")
    try:
        folds = d["folds"]
        if not isinstance(folds, list) or len(folds) != int(d["n_folds"]):
            raise LungcadError(f"{p}: n_folds is {d['n_folds']} but the file holds "
                               f"{len(folds) if isinstance(folds, list) else 'no list of'} folds")
        for k, fold in enumerate(folds):
            missing = [name for name in PARTS if not isinstance(fold.get(name), list)]
            if missing:
                raise LungcadError(f"{p}: fold {k} lacks the part(s) {missing}")
        groups = {str(k): str(v) for k, v in d.get("groups", {}).items()}
        return Split(folds=folds, task=str(d["task"]), n_folds=int(d["n_folds"]),
                     manifest_sha256=str(d["manifest_sha256"]), seed=int(d.get("seed", 0)),
                     val_fraction=float(d.get("val_fraction", 0.2)),
                     dataset=str(d.get("dataset", "")), grouping=dict(d.get("grouping", {})),
                     groups=groups, labels={str(k): str(v) for k, v in d.get("labels", {}).items()})
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise LungcadError(f"{p}: malformed split file ({type(exc).__name__}: {exc})") from None


def _grouped_parts(classes: np.ndarray, groups: np.ndarray, n_splits: int, seed: int,
                   notes: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = len(np.unique(groups))
    if n_groups < n_splits:
        raise LungcadError(f"only {n_groups} independent group(s) of images, too few for "
                           f"{n_splits} parts; use fewer folds (or a larger --val-fraction)")
    with pywarnings.catch_warnings(record=True) as caught:
        pywarnings.simplefilter("always")
        parts = list(StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
                     .split(np.zeros(len(classes)), classes, groups))
    notes += [str(w.message) for w in caught]
    return parts


def make_split(manifest: Manifest, task_name: str, n_folds: int = 10, val_fraction: float = 0.2,
               seed: int = 0, threshold: int = NEAR_DUP_THRESHOLD, workers: int = 1,
               use_cache: bool = True, progress: bool = True) -> tuple[Split, list[str]]:
    """A grouped, stratified k-fold split of ``manifest`` for a task; returns it and warnings
    (label conflicts, near-duplicate groups spanning classes, thin classes)."""
    task = get_task(task_name)
    if n_folds < 2:
        raise LungcadError(f"a split needs at least 2 folds, not {n_folds}")
    if not 0 < val_fraction <= 0.5:
        raise LungcadError(f"--val-fraction must be above 0 and at most 0.5, not {val_fraction}")
    if not 0 <= threshold < PHASH_BITS:
        raise LungcadError(f"--near-dup-threshold must be 0 to {PHASH_BITS - 1} bits "
                           f"(of a {PHASH_BITS}-bit hash), not {threshold}")
    task.check_labels(manifest.table["label"])
    mapped = task.map_labels(manifest.table["label"])
    rows = manifest.table[mapped.notna()].reset_index(drop=True)
    classes = mapped[mapped.notna()].tolist()
    paths = rows["path"].tolist()

    hashed = compute_hashes([manifest.image_path(p) for p in paths], workers=workers,
                            use_cache=use_cache, progress=progress)
    if hashed.failures:
        names = ", ".join(paths[i] for i in list(hashed.failures)[:5])
        raise LungcadError(f"{len(hashed.failures)} image(s) cannot be read ({names}); run "
                           "`lungcad data check` and fix or remove them before splitting")
    given = rows["group"].tolist() if "group" in rows.columns else None
    dups = group_duplicates(hashed.hashes, threshold, given)

    warnings: list[str] = []
    source_labels = rows["label"].astype(str).tolist()
    conflicts = []
    for members in dups.exact_groups:
        found = sorted({source_labels[i] for i in members})
        if len(found) > 1:
            conflicts.append({"labels": found, "paths": [paths[i] for i in members]})
            same_class = len({classes[i] for i in members}) == 1
            warnings.append(f"label conflict: identical pixels under labels {found}: "
                            f"{', '.join(paths[i] for i in members)} (kept in one group"
                            f"{'; one class in task ' + task.name if same_class else ''})")
    for members in dups.near_groups:
        found = sorted({classes[i] for i in members})
        if len(found) > 1:
            warnings.append(f"a near-duplicate group of {len(members)} images spans the classes "
                            f"{found} (e.g. {paths[members[0]]}); one patient under two labels?")

    group_ids = np.asarray(dups.group_of)
    class_index = np.array([task.classes.index(c) for c in classes])
    notes: list[str] = []
    path_array = np.asarray(paths, dtype=object)
    n_inner = max(2, round(1 / val_fraction))
    folds = []
    for k, (rest, test) in enumerate(_grouped_parts(class_index, group_ids, n_folds, seed, notes)):
        inner = _grouped_parts(class_index[rest], group_ids[rest], n_inner, seed + 1 + k, notes)
        train_i, val_i = inner[0]
        folds.append({"fold": k, "train": sorted(path_array[rest][train_i].tolist()),
                      "val": sorted(path_array[rest][val_i].tolist()),
                      "test": sorted(path_array[test].tolist())})
    warnings += sorted(set(notes))

    sizes = dups.size_distribution()
    methods = (["group column"] if given is not None else []) + \
        ["exact pixel hash", "perceptual hash"]
    grouping = {
        "methods": methods, "exact_hash": EXACT_HASH, "perceptual_hash": PERCEPTUAL_HASH,
        "hash_bits": PHASH_BITS, "near_dup_threshold": threshold,
        "exact_duplicate_groups": len(dups.exact_groups),
        "near_duplicate_groups": len(dups.near_groups),
        "near_duplicate_pairs": len(dups.near_pairs),
        "groups": dups.n_groups, "largest_group": max(sizes) if sizes else 0,
        "group_sizes": {str(s): n for s, n in sizes.items()},
        "label_conflicts": conflicts,
    }
    split = Split(folds=folds, task=task.name, n_folds=n_folds, manifest_sha256=manifest.sha256(),
                  seed=seed, val_fraction=val_fraction, dataset=manifest.root.resolve().name,
                  grouping=grouping, groups={p: f"g{g}" for p, g in zip(paths, dups.group_of)},
                  labels=dict(zip(paths, classes)))
    return split, warnings


# ---------------------------------------------------------------------------------------------
# one fold of a split, for a task: the one view every trainer, experiment and verb reads

@dataclass(frozen=True)
class FoldView:
    """One fold of a split file seen through a task, checked once.

    ``train``, ``val`` and ``test`` hold the manifest paths of each part whose label has a class
    in the task (a split made for a wider task may hold others); :meth:`raw_part` gives a part
    as the file lists it. Built by :func:`load_fold` (checks: the split was made for this
    labels.csv, the fold exists, no image is in two parts, the training part has every class),
    or by :func:`whole_dataset` for a final model trained on everything.
    """

    manifest: Manifest
    task: Task
    fold: int
    n_folds: int
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    split: Split | None = None
    split_path: Path | None = None
    split_sha256: str | None = None

    @property
    def held_out(self) -> tuple[str, ...]:
        """The validation and test images that are not training images: what nothing made for
        training (synthetic nodules, say) may touch. Empty for :func:`whole_dataset`'s view,
        whose validation part is its training part."""
        train = set(self.train)
        return tuple(p for p in self.val + self.test if p not in train)

    def labels(self, part: str) -> list[int]:
        """The task's class index of each image of ``part`` (train, val or test)."""
        paths = list(getattr(self, _checked_part(part)))
        return self.task.class_index(self.manifest.rows_for(paths)["label"]) if paths else []

    def true_labels(self, part: str) -> list[str]:
        return [self.task.classes[i] for i in self.labels(part)]

    def class_counts(self, part: str) -> dict[str, int]:
        counts = np.bincount(np.asarray(self.labels(part), dtype=int),
                             minlength=len(self.task.classes))
        return {c: int(n) for c, n in zip(self.task.classes, counts)}

    def raw_part(self, part: str) -> list[str]:
        """The part as the split file lists it (labels the task has no class for included)."""
        if self.split is None:
            return list(getattr(self, _checked_part(part)))
        return self.split.part(self.fold, _checked_part(part))


def _checked_part(part: str) -> str:
    if part not in PARTS:
        raise LungcadError(f"unknown split part {part!r}; parts are {', '.join(PARTS)}")
    return part


def check_split_matches(split: Split, manifest: Manifest, split_path: str | Path) -> None:
    """Refuse a split file made for another labels.csv (its paths or labels may differ)."""
    wanted = split.manifest_sha256
    if wanted and wanted != manifest.sha256():
        raise LungcadError(
            f"{split_path} was made for a labels.csv with sha256 {wanted[:12]}..., but "
            f"{manifest.root / 'labels.csv'} has {manifest.sha256()[:12]}...; use the split made "
            "for this dataset (lungcad data split), or point --data at the right folder")


def _labelled(manifest: Manifest, task, paths: list[str]) -> tuple[str, ...]:
    if not paths:
        return ()
    rows = manifest.rows_for(paths)
    return tuple(rows.loc[task.map_labels(rows["label"]).notna().to_numpy(), "path"])


def load_fold(dataset: str | Path | Manifest, split_path: str | Path, task: str | Task,
              fold: int) -> FoldView:
    """Manifest + split file + task -> the checked :class:`FoldView` of fold ``fold``."""
    from lungcad.hashing import file_sha256

    manifest = dataset if isinstance(dataset, Manifest) else Manifest.load(dataset)
    task = get_task(task) if isinstance(task, str) else task
    split_path = Path(split_path)
    split = load_split(split_path)
    check_split_matches(split, manifest, split_path)
    if isinstance(fold, bool) or not isinstance(fold, (int, np.integer)) \
            or not 0 <= fold < split.n_folds:
        raise LungcadError(f"fold {fold} does not exist in {split_path} "
                           f"(folds 0 to {split.n_folds - 1})")
    fold = int(fold)
    parts = {name: _labelled(manifest, task, split.part(fold, name)) for name in PARTS}
    for a, b in (("train", "test"), ("val", "test"), ("train", "val")):
        shared = set(parts[a]) & set(parts[b])
        if shared:
            raise LungcadError(f"{split_path}: fold {fold} has {len(shared)} image(s) in both "
                               f"its {a} and {b} parts, e.g. {sorted(shared)[:2]}; remake the "
                               "split")
    for name in ("train", "val"):
        if not parts[name]:
            raise LungcadError(f"{split_path}: the {name} part of fold {fold} has no image with "
                               f"a class of task {task.name}")
    task.check_labels(manifest.rows_for(list(parts["train"]))["label"])
    return FoldView(manifest, task, fold, split.n_folds, parts["train"], parts["val"],
                    parts["test"], split, split_path, file_sha256(split_path))


def whole_dataset(manifest: Manifest, task: Task, paths: list[str] | None = None) -> FoldView:
    """Every labelled image (or those ``paths``) as both the training and the validation part:
    the view a final model trains on once cross-validation has scored the recipe."""
    every = _labelled(manifest, task, manifest.paths if paths is None else list(paths))
    if not every:
        raise LungcadError(f"{manifest.root}: no image with a class of task {task.name}")
    task.check_labels(manifest.rows_for(list(every))["label"])
    return FoldView(manifest, task, 0, 1, every, every, ())
