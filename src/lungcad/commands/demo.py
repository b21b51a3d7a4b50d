"""``lungcad demo [--out DIR]``: the bundled models on real DICOM samples, offline."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the bundled models on two real DICOM files (offline) into an HTML page",
        description="Run every bundled model on the DICOM samples that pydicom and pydicom-data "
                    "install (RG1_UNCI.dcm, a chest radiograph; CT_small.dcm, a chest CT slice) "
                    "and write DIR/demo.html with verdicts and heatmaps (and, for the lung "
                    "segmentation model jsrt-lungs, lung outlines and measures). Needs no "
                    "network and no dataset. Research software, not a medical device.")
    parser.add_argument("--out", type=Path, default=Path("lungcad-demo"), metavar="DIR",
                        help="folder for demo.html and its figures (default: ./lungcad-demo)")
    parser.add_argument("--model", dest="models", action="append", metavar="MODEL",
                        help="only this bundled model, model directory or run folder "
                             "(repeatable; default: every bundled model)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lungcad.demo import run_demo

    page = run_demo(args.out, args.models)
    print(f"demo report: {page.resolve()}")
    return 0
