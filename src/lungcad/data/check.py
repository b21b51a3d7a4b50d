"""`lungcad data check`: counts, unreadable files, duplicates, label conflicts, leaks.

Leaks are pairs of images that sit in two different parts although they are the same file,
pixel-identical, near duplicates (perceptual hash within the threshold) or share a ``group``
value. The parts audited are those of each fold of a split file when one is given, else those of
the manifest's published ``split`` column, if it has one. Unreadable files and leaks make the
report fail (``ok`` false; exit status 1 from the CLI).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from lungcad.data.dedup import (NEAR_DUP_THRESHOLD, PERCEPTUAL_HASH, PHASH_BITS, DuplicateGroups,
                                compute_hashes, group_duplicates)
from lungcad.data.manifest import Manifest
from lungcad.data.splits import PARTS, Split
from lungcad.data.tasks import get_task
from lungcad.errors import LungcadError


@dataclass
class CheckReport:
    dataset: str
    manifest_sha256: str
    images: int
    labels: dict[str, int]
    unreadable: list[dict]
    near_dup_threshold: int
    perceptual_hash: str
    exact_duplicate_groups: list[list[str]]
    near_duplicate_groups: list[list[str]]
    near_group_sizes: dict[str, int]
    label_conflicts: list[dict]
    near_groups_spanning_labels: list[dict]
    published_split_column: bool = False
    cross_split_copies: list[dict] = field(default_factory=list)
    cross_split_near_duplicates: list[dict] = field(default_factory=list)
    split: dict | None = None
    leaks: list[dict] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        found = []
        if self.unreadable:
            found.append(f"{len(self.unreadable)} unreadable file(s)")
        # the published split is the one under audit only when no split file is given
        if self.split is None and (self.cross_split_copies or self.cross_split_near_duplicates):
            found.append(f"{len(self.cross_split_copies)} exact and "
                         f"{len(self.cross_split_near_duplicates)} near-duplicate group(s) "
                         "across the published split column")
        if self.split is not None:
            found += self.split["problems"]
            if self.leaks:
                found.append(f"{len(self.leaks)} leak(s) between the split's parts")
        return found

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok, "problems": self.problems}


def _pairs_of(dups: DuplicateGroups, hashes) -> list[tuple[int, int, str, int]]:
    """Every related pair (i, j, kind, distance): pixel-identical or within the threshold."""
    by_pixels: dict[str, list[int]] = {}
    for i, h in enumerate(hashes):
        if h is not None:
            by_pixels.setdefault(h.pixel_sha256, []).append(i)
    members_of = {m[0]: m for m in by_pixels.values()}
    pairs = []
    for members in by_pixels.values():
        pairs += [(a, b, "exact duplicate", 0) for x, a in enumerate(members) for b in members[x + 1:]]
    for ra, rb, d in dups.near_pairs:
        pairs += [(a, b, "near duplicate", d) for a in members_of[ra] for b in members_of[rb]]
    return pairs


def check_dataset(manifest: Manifest, split: Split | None = None, threshold: int | None = None,
                  workers: int = 1, use_cache: bool = True, progress: bool = True) -> CheckReport:
    """Audit a dataset (and optionally a split of it). The near-duplicate threshold is the one
    given, else the larger of the default and the split's own."""
    if threshold is None:
        threshold = max(NEAR_DUP_THRESHOLD, (split.near_dup_threshold or 0) if split else 0)
    if not 0 <= threshold < PHASH_BITS:
        raise LungcadError(f"--near-dup-threshold must be 0 to {PHASH_BITS - 1} bits, not {threshold}")
    paths = manifest.paths
    labels = manifest.table["label"].astype(str).tolist()
    hashed = compute_hashes([manifest.image_path(p) for p in paths], workers=workers,
                            use_cache=use_cache, progress=progress)
    dups = group_duplicates(hashed.hashes, threshold)

    def listed(groups: list[list[int]]) -> list[list[str]]:
        return [[paths[i] for i in m] for m in groups]

    conflicts, spanning = [], []
    for members in dups.exact_groups:
        found = sorted({labels[i] for i in members})
        if len(found) > 1:
            conflicts.append({"labels": found, "paths": [paths[i] for i in members]})
    for members in dups.near_groups:
        found = sorted({labels[i] for i in members})
        if len(found) > 1:
            spanning.append({"labels": found, "size": len(members),
                             "paths": [paths[i] for i in members]})
    sizes: dict[int, int] = {}
    for members in dups.near_groups:
        sizes[len(members)] = sizes.get(len(members), 0) + 1
    report = CheckReport(
        dataset=str(manifest.root), manifest_sha256=manifest.sha256(), images=len(manifest),
        labels=manifest.label_counts(),
        unreadable=[{"path": paths[i], "error": e} for i, e in sorted(hashed.failures.items())],
        near_dup_threshold=threshold, perceptual_hash=PERCEPTUAL_HASH,
        exact_duplicate_groups=listed(dups.exact_groups),
        near_duplicate_groups=listed(dups.near_groups),
        near_group_sizes={str(k): v for k, v in sorted(sizes.items())},
        label_conflicts=conflicts, near_groups_spanning_labels=spanning)
    if "split" in manifest.table.columns:
        report.published_split_column = True
        published = manifest.table["split"].astype(str).tolist()
        for members in dups.exact_groups:
            found = sorted({published[i] for i in members})
            if len(found) > 1:
                report.cross_split_copies.append({"splits": found,
                                                  "paths": [paths[i] for i in members]})
        for members in dups.near_groups:
            found = sorted({published[i] for i in members})
            if len(found) > 1:
                report.cross_split_near_duplicates.append(
                    {"splits": found, "size": len(members), "paths": [paths[i] for i in members]})
    if split is not None:
        report.split, report.leaks = _check_split(manifest, split, dups, hashed.hashes)
    return report


def _check_split(manifest: Manifest, split: Split, dups: DuplicateGroups,
                 hashes) -> tuple[dict, list[dict]]:
    problems: list[str] = []
    if split.manifest_sha256 != manifest.sha256():
        problems.append("the split was made for another version of labels.csv (its manifest "
                        f"sha256 {split.manifest_sha256[:12]}... differs from "
                        f"{manifest.sha256()[:12]}...); make the split again")
    index = {p: i for i, p in enumerate(manifest.paths)}
    try:
        task = get_task(split.task)
        mapped = task.map_labels(manifest.table["label"])
        expected = set(manifest.table["path"][mapped.notna()])
    except LungcadError as exc:
        problems.append(str(exc))
        expected = None
    group_col = manifest.table["group"].tolist() if "group" in manifest.table.columns else None
    pairs = _pairs_of(dups, hashes)
    leaks: list[dict] = []
    per_fold = []
    for k, fold in enumerate(split.folds):
        part_of: dict[int, str] = {}
        unknown = []
        for name in PARTS:
            for p in fold[name]:
                if p not in index:
                    unknown.append(p)
                elif index[p] in part_of:
                    leaks.append({"fold": k, "kind": "same image", "parts": [part_of[index[p]], name],
                                  "paths": [p, p], "distance": 0})
                else:
                    part_of[index[p]] = name
        if unknown:
            problems.append(f"fold {k}: {len(unknown)} path(s) are not in the dataset, "
                            f"e.g. {unknown[:3]}")
        if expected is not None:
            listed = {manifest.paths[i] for i in part_of}
            missing = sorted(expected - listed)
            if missing:
                problems.append(f"fold {k}: {len(missing)} image(s) of task {split.task} are in "
                                f"no part, e.g. {missing[:3]}")
        n_before = len(leaks)
        for a, b, kind, d in pairs:
            if a in part_of and b in part_of and part_of[a] != part_of[b]:
                leaks.append({"fold": k, "kind": kind, "parts": [part_of[a], part_of[b]],
                              "paths": [manifest.paths[a], manifest.paths[b]], "distance": d})
        if group_col is not None:
            seen: dict[str, tuple[int, str]] = {}
            for i, name in sorted(part_of.items()):
                g = group_col[i]
                if g is None or g != g or str(g) == "":
                    continue
                first = seen.setdefault(str(g), (i, name))
                if first[1] != name:
                    leaks.append({"fold": k, "kind": "same group", "parts": [first[1], name],
                                  "paths": [manifest.paths[first[0]], manifest.paths[i]],
                                  "distance": None})
        per_fold.append({"fold": k, **{n: len(fold[n]) for n in PARTS},
                         "leaks": len(leaks) - n_before})
    info = {"task": split.task, "n_folds": split.n_folds, "seed": split.seed,
            "near_dup_threshold_of_split": split.near_dup_threshold,
            "manifest_matches": split.manifest_sha256 == manifest.sha256(),
            "folds": per_fold, "problems": problems}
    return info, leaks


def format_report(r: CheckReport, limit: int = 10) -> str:
    """The report as text a person reads."""
    lines = [f"dataset {r.dataset} (labels.csv sha256 {r.manifest_sha256[:12]}...)",
             f"{r.images} images: " + ", ".join(f"{k} {v}" for k, v in r.labels.items()),
             f"unreadable files: {len(r.unreadable)}"]
    lines += [f"  {u['path']}: {u['error']}" for u in r.unreadable[:limit]]
    if len(r.unreadable) > limit:
        lines.append(f"  ... {len(r.unreadable) - limit} more (--json lists all)")
    n_dup = sum(len(g) for g in r.exact_duplicate_groups)
    lines.append(f"exact duplicate groups (identical pixels): {len(r.exact_duplicate_groups)} "
                 f"({n_dup} images)")
    lines += ["  " + ", ".join(g) for g in r.exact_duplicate_groups[:limit]]
    if len(r.exact_duplicate_groups) > limit:
        lines.append(f"  ... {len(r.exact_duplicate_groups) - limit} more (--json lists all)")
    n_near = sum(len(g) for g in r.near_duplicate_groups)
    sizes = ", ".join(f"{n} of {s}" for s, n in r.near_group_sizes.items())
    lines.append(f"near-duplicate groups (perceptual hash within {r.near_dup_threshold} of "
                 f"{PHASH_BITS} bits, joined transitively): {len(r.near_duplicate_groups)} "
                 f"({n_near} images{'; sizes: ' + sizes if sizes else ''})")
    lines.append(f"label conflicts (identical pixels, different labels): {len(r.label_conflicts)}")
    lines += [f"  {' / '.join(c['labels'])}: {', '.join(c['paths'])}"
              for c in r.label_conflicts[:limit]]
    if r.near_groups_spanning_labels:
        lines.append(f"near-duplicate groups spanning labels: {len(r.near_groups_spanning_labels)}")
        lines += [f"  {' / '.join(g['labels'])}: {g['size']} images, e.g. "
                  f"{', '.join(g['paths'][:4])}" for g in r.near_groups_spanning_labels[:limit]]
    if r.published_split_column:
        lines.append(f"copies across the published split column: {len(r.cross_split_copies)} "
                     "exact duplicate group(s); near-duplicate groups across it (exact copies "
                     f"included): {len(r.cross_split_near_duplicates)}"
                     + (" (not counted as a problem: the split file is audited instead)"
                        if r.split is not None and (r.cross_split_copies or
                                                    r.cross_split_near_duplicates) else ""))
        lines += [f"  {' / '.join(c['splits'])}: {', '.join(c['paths'])}"
                  for c in r.cross_split_copies[:limit]]
        lines += [f"  {' / '.join(c['splits'])} (near, {c['size']} images): "
                  f"{', '.join(c['paths'][:4])}" for c in r.cross_split_near_duplicates[:limit]]
    if r.split is not None:
        s = r.split
        lines.append(f"split: task {s['task']}, {s['n_folds']} folds, seed {s['seed']}; manifest "
                     f"hash {'matches' if s['manifest_matches'] else 'DIFFERS'}")
        lines += [f"  fold {f['fold']}: train {f['train']}, val {f['val']}, test {f['test']}; "
                  f"leaks {f['leaks']}" for f in s["folds"]]
        lines += [f"  problem: {p}" for p in s["problems"][:limit]]
        exact = sum(1 for x in r.leaks if x["kind"] in ("exact duplicate", "same image"))
        near = sum(1 for x in r.leaks if x["kind"] == "near duplicate")
        group = len(r.leaks) - exact - near
        lines.append(f"leaks between parts: {len(r.leaks)} ({exact} exact or same image, "
                     f"{near} near duplicate{f', {group} same group' if group else ''})")
        lines += [f"  fold {x['fold']} {x['kind']} {x['parts'][0]}/{x['parts'][1]}: "
                  f"{x['paths'][0]} ~ {x['paths'][1]}"
                  + (f" (distance {x['distance']})" if x["kind"] == "near duplicate" else "")
                  for x in r.leaks[:limit]]
        if len(r.leaks) > limit:
            lines.append(f"  ... {len(r.leaks) - limit} more (--json lists all)")
    problems = r.problems
    lines.append("OK" if not problems else "PROBLEMS FOUND: " + "; ".join(problems))
    return "\n".join(lines)
