"""`lungcad data check`: counts, unreadable files, duplicates, label conflicts, split leaks."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lungcad.data.dedup import NEAR_DUP_THRESHOLD, hamming_matrix
from lungcad.data.manifest import Manifest
from lungcad.data.splits import PARTS, Split, dataset_groups


@dataclass
class CheckReport:
    dataset: str
    images: int
    labels: dict[str, int]
    unreadable: list[dict]
    exact_duplicate_groups: list[list[str]]
    near_duplicate_groups: int
    near_duplicate_pairs: int
    near_threshold: int
    label_conflicts: list[dict]
    cross_split_copies: list[dict]
    split: dict | None = None
    leaks: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.unreadable and not self.leaks and not (self.split or {}).get("problems")

    def to_dict(self) -> dict:
        return {**self.__dict__, "ok": self.ok}


def check_dataset(manifest: Manifest, split: Split | None = None,
                  threshold: int = NEAR_DUP_THRESHOLD, workers: int = 2) -> CheckReport:
    hashes, dups, unreadable = dataset_groups(manifest, threshold, workers)
    paths, labels = manifest.paths, manifest.table["label"].astype(str).tolist()
    conflicts = []
    for members in dups.exact_groups:
        found = sorted({labels[i] for i in members})
        if len(found) > 1:
            conflicts.append({"labels": found, "paths": [paths[i] for i in members]})
    cross = []
    if "split" in manifest.table.columns:
        published = manifest.table["split"].astype(str).tolist()
        for members in dups.exact_groups:
            found = sorted({published[i] for i in members})
            if len(found) > 1:
                cross.append({"splits": found, "paths": [paths[i] for i in members]})
    report = CheckReport(
        dataset=str(manifest.root), images=len(manifest), labels=manifest.label_counts(),
        unreadable=[{"path": p, "error": e} for p, e in unreadable],
        exact_duplicate_groups=[[paths[i] for i in m] for m in dups.exact_groups],
        near_duplicate_groups=len(dups.near_groups), near_duplicate_pairs=dups.near_pairs,
        near_threshold=threshold, label_conflicts=conflicts, cross_split_copies=cross)
    if split is not None:
        report.split, report.leaks = _check_split(manifest, split, hashes, threshold)
    return report


def _check_split(manifest: Manifest, split: Split, hashes, threshold: int) -> tuple[dict, list[dict]]:
    problems = []
    if split.manifest_sha256 != manifest.sha256():
        problems.append("the split was made for another version of labels.csv (manifest hash differs)")
    index = {p: i for i, p in enumerate(manifest.paths)}
    leaks = []
    for k, fold in enumerate(split.folds):
        part_of: dict[int, str] = {}
        for name in PARTS:
            for p in fold[name]:
                if p not in index:
                    problems.append(f"fold {k}: {p} is not in the dataset")
                elif index[p] in part_of:
                    leaks.append({"fold": k, "kind": "same image", "parts": [part_of[index[p]], name],
                                  "paths": [p, p], "distance": 0})
                else:
                    part_of[index[p]] = name
        members = [i for i in part_of if hashes[i].phash is not None]
        if not members:
            continue
        d = hamming_matrix(np.array([hashes[i].phash for i in members], dtype=np.uint64))
        a, b = np.nonzero(np.triu(d <= threshold, k=1))
        for i, j in zip(a.tolist(), b.tolist()):
            ri, rj = members[i], members[j]
            if part_of[ri] != part_of[rj]:
                exact = hashes[ri].pixel_md5 == hashes[rj].pixel_md5
                leaks.append({"fold": k, "kind": "exact duplicate" if exact else "near duplicate",
                              "parts": [part_of[ri], part_of[rj]],
                              "paths": [manifest.paths[ri], manifest.paths[rj]],
                              "distance": int(d[i, j])})
    return {"task": split.task, "n_folds": split.n_folds, "problems": problems}, leaks


def format_report(r: CheckReport, limit: int = 10) -> str:
    lines = [f"dataset {r.dataset}: {r.images} images",
             "labels: " + ", ".join(f"{k} {v}" for k, v in r.labels.items())]
    lines.append(f"unreadable files: {len(r.unreadable)}")
    lines += [f"  {u['path']}: {u['error']}" for u in r.unreadable[:limit]]
    n_dup_images = sum(len(g) for g in r.exact_duplicate_groups)
    lines.append(f"exact duplicate groups (identical pixels): {len(r.exact_duplicate_groups)} "
                 f"({n_dup_images} images)")
    lines += ["  " + ", ".join(g) for g in r.exact_duplicate_groups[:limit]]
    if len(r.exact_duplicate_groups) > limit:
        lines.append(f"  ... {len(r.exact_duplicate_groups) - limit} more (--json lists all)")
    lines.append(f"near-duplicate groups (perceptual-hash distance <= {r.near_threshold}): "
                 f"{r.near_duplicate_groups} ({r.near_duplicate_pairs} near pairs beyond exact copies)")
    lines.append(f"label conflicts (identical pixels, different labels): {len(r.label_conflicts)}")
    lines += [f"  {c['labels']}: {', '.join(c['paths'])}" for c in r.label_conflicts[:limit]]
    lines.append(f"copies across the published split column: {len(r.cross_split_copies)}")
    lines += [f"  {c['splits']}: {', '.join(c['paths'])}" for c in r.cross_split_copies[:limit]]
    if r.split is not None:
        lines.append(f"split: task {r.split['task']}, {r.split['n_folds']} folds")
        lines += [f"  problem: {p}" for p in r.split["problems"][:limit]]
        exact = sum(1 for x in r.leaks if x["kind"] != "near duplicate")
        lines.append(f"leaks between parts: {len(r.leaks)} ({exact} exact or same image, "
                     f"{len(r.leaks) - exact} near duplicate)")
        lines += [f"  fold {x['fold']} {x['kind']} {x['parts'][0]}/{x['parts'][1]}: "
                  f"{x['paths'][0]} ~ {x['paths'][1]}" for x in r.leaks[:limit]]
    lines.append("OK" if r.ok else "PROBLEMS FOUND (exit status 1)")
    return "\n".join(lines)
