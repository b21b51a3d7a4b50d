"""`lungcad data prepare | split | check`: datasets in, leak-free split files out."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("data", help="prepare datasets, make leak-free splits, check datasets",
                            description="Datasets: prepare (convert sources), import (box "
                            "annotations), split (grouped, stratified folds as JSON), check "
                            "(counts, duplicates, leaks).")
    verbs = parser.add_subparsers(dest="data_verb", metavar="SUBVERB")
    parser.set_defaults(func=lambda args: _help(parser))

    p = verbs.add_parser("prepare", help="convert JSRT .IMG, class folders or a manifest into a dataset",
                         description="Convert a source into a dataset folder (PNG images + "
                         "labels.csv). The source is never written to.")
    p.add_argument("source", type=Path, help="source folder")
    p.add_argument("--format", required=True, choices=["jsrt", "folders", "manifest"],
                   help="jsrt: .IMG files + jsrt_metadata.csv; folders: one sub-folder per "
                   "class; manifest: re-size an existing dataset")
    p.add_argument("--out", required=True, type=Path, help="new (or empty) output folder")
    p.add_argument("--size", type=int, help="output side N in pixels (N x N); default: keep")
    p.add_argument("--metadata", type=Path, help="jsrt: the Kaggle jsrt_metadata.csv "
                   "(default SOURCE/jsrt_metadata.csv)")
    p.add_argument("--workers", type=int, default=_default_workers(), help="processes")
    p.set_defaults(func=run_prepare)

    i = verbs.add_parser("import", help="a box-annotated set (NODE21, COCO, VOC, CVAT, YOLO, "
                         "ChestX-Det, NIH) into a dataset with lesions.csv",
                         description="Import box annotations into a dataset folder: labels.csv "
                         "(label lesion / no_lesion, width, height, spacing_mm), lesions.csv "
                         "(one row a box, in the image's own pixels; docs/lesions.md) and "
                         "images/ (links to the images where they lie, or copies with --copy). "
                         "Everything is checked before anything is written.")
    i.add_argument("sources", type=Path, nargs="+", metavar="SRC",
                   help="annotation file(s): NODE21 metadata.csv, COCO or ChestX-Det JSON, "
                   "CVAT XML, NIH BBox_List_2017.csv; VOC .xml or YOLO .txt files or folders")
    i.add_argument("--format", required=True,
                   choices=["node21", "coco", "voc", "cvat", "yolo", "chestx-det", "nih-bbox"])
    i.add_argument("--images", required=True, type=Path, metavar="DIR",
                   help="folder holding the images the annotations name")
    i.add_argument("--out", required=True, type=Path, metavar="DATASET",
                   help="new (or empty) dataset folder")
    i.add_argument("--copy", action="store_true",
                   help="copy the image files (default: link to them where they lie)")
    i.add_argument("--labels", metavar="LABEL,...",
                   help="keep only lesions with these labels (e.g. nodule,mass); others are "
                   "dropped and counted")
    i.add_argument("--spacing-mm", type=float, metavar="MM",
                   help="millimetres a pixel for images whose header gives none (else "
                   "evaluation assumes the JSRT field of view and says so)")
    i.set_defaults(func=run_import)

    s = verbs.add_parser("split", help="grouped, stratified k-fold split file (JSON)",
                         description="Stratified k-fold split with a validation part inside each "
                         "training part; images that are copies or near duplicates of each other, "
                         "or share a `group` value, always land in the same part.")
    s.add_argument("dataset", type=Path)
    s.add_argument("--task", required=True, help="task name (see lungcad.data.tasks)")
    s.add_argument("--folds", type=int, default=10)
    s.add_argument("--val-fraction", type=float, default=0.2)
    s.add_argument("--seed", type=int, default=0)
    _threshold_option(s)
    s.add_argument("--workers", type=int, default=_default_workers())
    s.add_argument("--no-cache", action="store_true", help="do not reuse or store image hashes")
    s.add_argument("--out", required=True, type=Path, help="split file to write (JSON)")
    s.set_defaults(func=run_split)

    c = verbs.add_parser("check", help="counts, unreadable files, duplicates, conflicts, split leaks",
                         description="Audit a dataset (and a split of it). Exit status 1 on "
                         "unreadable files or leaks.")
    c.add_argument("dataset", type=Path)
    c.add_argument("--split", type=Path, help="also check this split file for leaks")
    _threshold_option(c, check=True)
    c.add_argument("--workers", type=int, default=_default_workers())
    c.add_argument("--no-cache", action="store_true", help="do not reuse or store image hashes")
    c.add_argument("--json", action="store_true", help="print the full report as JSON")
    c.set_defaults(func=run_check)


def _threshold_option(parser: argparse.ArgumentParser, check: bool = False) -> None:
    from lungcad.data.dedup import NEAR_DUP_THRESHOLD, PHASH_BITS

    extra = " or the split's own if larger" if check else ""
    parser.add_argument("--near-dup-threshold", type=int, default=None, metavar="BITS",
                        help=f"near duplicates differ in at most this many of the {PHASH_BITS} "
                        f"perceptual-hash bits (default {NEAR_DUP_THRESHOLD}{extra})")


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _check_workers(workers: int) -> None:
    from lungcad.errors import LungcadError

    if workers < 1:
        raise LungcadError(f"--workers must be at least 1, not {workers}")


def run_prepare(args) -> int:
    from lungcad.data import prepare
    from lungcad.errors import LungcadError

    _check_workers(args.workers)
    if not args.source.is_dir():
        raise LungcadError(f"source folder not found: {args.source}")
    if args.size is not None and args.size < prepare.MIN_SIZE:
        raise LungcadError(f"--size must be at least {prepare.MIN_SIZE} pixels, not {args.size}")
    if args.metadata is not None and args.format != "jsrt":
        raise LungcadError("--metadata applies to --format jsrt only")
    if args.format == "jsrt":
        result = prepare.prepare_jsrt(args.source, args.metadata, args.out, args.size, args.workers)
    elif args.format == "folders":
        result = prepare.prepare_folders(args.source, args.out, args.size, args.workers)
    else:
        result = prepare.prepare_manifest(args.source, args.out, args.size, args.workers)
    for name, error in result.failed:
        print(f"failed: {name}: {error}", file=sys.stderr)
    skipped = f"; skipped {len(result.skipped)} non-image file(s)" if result.skipped else ""
    print(f"prepared {result.written} image(s) into {result.out}; {len(result.failed)} failed"
          f"{skipped}")
    return 1 if result.failed else 0


def run_import(args) -> int:
    from lungcad.data.importer import import_dataset

    keep = {k for k in (args.labels or "").split(",") if k.strip()} or None
    result = import_dataset(args.format, list(args.sources), args.images, args.out, args.copy,
                            keep, args.spacing_mm)
    labels = ", ".join(f"{k} {v}" for k, v in result.by_label.items()) or "none"
    print(f"imported {result.images} image(s) and {result.lesions} lesion(s) ({labels}) into "
          f"{result.out} ({'copied' if args.copy else 'linked'})")
    if result.dropped:
        print("dropped (not in --labels): " + ", ".join(f"{k} {v}"
                                                       for k, v in result.dropped.items()))
    print("pixel spacing: " + ", ".join(f"{k} {v}" for k, v in result.spacing.items()))
    return 0


def run_split(args) -> int:
    from lungcad.data.dedup import NEAR_DUP_THRESHOLD
    from lungcad.data.manifest import Manifest
    from lungcad.data.splits import make_split

    _check_workers(args.workers)
    manifest = Manifest.load(args.dataset)
    threshold = NEAR_DUP_THRESHOLD if args.near_dup_threshold is None else args.near_dup_threshold
    split, warnings = make_split(manifest, args.task, args.folds, args.val_fraction, args.seed,
                                 threshold, args.workers, use_cache=not args.no_cache)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    split.save(args.out)
    g = split.grouping
    sizes = ", ".join(f"{n}x{s}" for s, n in g["group_sizes"].items())
    print(f"wrote {args.out}: task {split.task}, {split.n_folds} folds, {len(split.groups)} images "
          f"in {g['groups']} groups ({g['exact_duplicate_groups']} exact-duplicate groups, "
          f"{g['near_duplicate_groups']} near-duplicate groups within {g['near_dup_threshold']} "
          f"bits; largest group {g['largest_group']})")
    print(f"group sizes (count x size): {sizes}")
    for fold in split.folds:
        print(f"  fold {fold['fold']}: train {len(fold['train'])}, val {len(fold['val'])}, "
              f"test {len(fold['test'])}")
    return 0


def run_check(args) -> int:
    from lungcad.data.check import check_dataset, format_report
    from lungcad.data.manifest import Manifest
    from lungcad.data.splits import load_split

    _check_workers(args.workers)
    manifest = Manifest.load(args.dataset)
    split = load_split(args.split) if args.split else None
    report = check_dataset(manifest, split, args.near_dup_threshold, args.workers,
                           use_cache=not args.no_cache)
    print(json.dumps(report.to_dict(), indent=1) if args.json else format_report(report))
    return 0 if report.ok else 1
