"""`lungcad data prepare | split | check`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("data", help="prepare datasets, make leak-free splits, check datasets",
                            description="Datasets: prepare, split, check.")
    verbs = parser.add_subparsers(dest="data_verb", metavar="SUBVERB", required=True)

    p = verbs.add_parser("prepare", help="convert JSRT .IMG, class folders or a manifest into a dataset")
    p.add_argument("source", type=Path)
    p.add_argument("--format", required=True, choices=["jsrt", "folders", "manifest"])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--size", type=int, help="output side in pixels (square); default: keep")
    p.add_argument("--metadata", type=Path, help="jsrt: the Kaggle jsrt_metadata.csv "
                   "(default SOURCE/jsrt_metadata.csv)")
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=run_prepare)

    s = verbs.add_parser("split", help="grouped, stratified k-fold split file (JSON)")
    s.add_argument("dataset", type=Path)
    s.add_argument("--task", required=True)
    s.add_argument("--folds", type=int, default=10)
    s.add_argument("--val-fraction", type=float, default=0.2)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--near-dup-threshold", type=int, default=None,
                   help="perceptual-hash Hamming distance for near duplicates (default 6)")
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--out", required=True, type=Path)
    s.set_defaults(func=run_split)

    c = verbs.add_parser("check", help="counts, unreadable files, duplicates, conflicts, split leaks")
    c.add_argument("dataset", type=Path)
    c.add_argument("--split", type=Path)
    c.add_argument("--near-dup-threshold", type=int, default=None)
    c.add_argument("--workers", type=int, default=2)
    c.add_argument("--json", action="store_true", help="print the full report as JSON")
    c.set_defaults(func=run_check)


def _threshold(args) -> int:
    from lungcad.data.dedup import NEAR_DUP_THRESHOLD
    from lungcad.errors import LungcadError

    t = NEAR_DUP_THRESHOLD if args.near_dup_threshold is None else args.near_dup_threshold
    if not 0 <= t <= 64:
        raise LungcadError("--near-dup-threshold must be between 0 and 64 bits")
    return t


def run_prepare(args) -> int:
    from lungcad.data import prepare
    from lungcad.errors import LungcadError

    if not args.source.is_dir():
        raise LungcadError(f"source folder not found: {args.source}")
    if args.size is not None and args.size < 32:
        raise LungcadError("--size must be at least 32 pixels")
    if args.format == "jsrt":
        result = prepare.prepare_jsrt(args.source, args.metadata, args.out, args.size, args.workers)
    elif args.format == "folders":
        result = prepare.prepare_folders(args.source, args.out, args.size, args.workers)
    else:
        result = prepare.prepare_manifest(args.source, args.out, args.size, args.workers)
    for name, error in result.failed:
        print(f"failed: {name}: {error}", file=sys.stderr)
    print(f"prepared {result.written} image(s) into {result.out}; {len(result.failed)} failed")
    return 1 if result.failed else 0


def run_split(args) -> int:
    from lungcad.data.manifest import Manifest
    from lungcad.data.splits import make_split

    manifest = Manifest.load(args.dataset)
    split, warnings = make_split(manifest, args.task, args.folds, args.val_fraction, args.seed,
                                 _threshold(args), args.workers, dataset_label=str(args.dataset))
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    split.save(args.out)
    g = split.grouping
    print(f"wrote {args.out}: {split.n_folds} folds, task {split.task}, {len(split.groups)} images in "
          f"{g['groups']} groups ({g['exact_duplicate_groups']} exact-duplicate groups, "
          f"{g['near_duplicate_groups']} near-duplicate groups at distance <= {g['near_threshold']}, "
          f"largest group {g['largest_group']})")
    return 0


def run_check(args) -> int:
    from lungcad.data.check import check_dataset, format_report
    from lungcad.data.manifest import Manifest
    from lungcad.data.splits import load_split

    manifest = Manifest.load(args.dataset)
    split = load_split(args.split) if args.split else None
    report = check_dataset(manifest, split, _threshold(args), args.workers)
    print(json.dumps(report.to_dict(), indent=1) if args.json else format_report(report))
    return 0 if report.ok else 1
