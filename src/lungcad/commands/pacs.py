"""``lungcad pacs``: DICOMweb: fetch a study, run the model(s), store the results back."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Fetch every instance of a study from a DICOMweb service (WADO-RS), run the model on each image
and store its SR and overlay back into the same study (STOW-RS). Instances that hold no image,
and lungcad's own results, are skipped. For Orthanc with its DICOMweb plugin the URL is
http://HOST:8042/dicom-web. --model auto runs the bundled models of each image's modality
(DICOM Modality CR/DX/DR/RG or CT), one SR and overlay per model. Exit status 1 where an image failed (named on
stderr). See docs/dicom.md. Research software, not for diagnostic use.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "pacs", help="DICOMweb: fetch a study, store SR and overlay back",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="DICOMweb root, e.g. "
                        "http://127.0.0.1:8042/dicom-web")
    parser.add_argument("--study", required=True, metavar="UID", help="Study Instance UID")
    parser.add_argument("--model", default="auto", metavar="M|auto",
                        help="model name or directory, or auto (by DICOM Modality; default)")
    parser.add_argument("--no-heatmap", action="store_true",
                        help="overlay without the saliency heatmap (faster)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from lungcad.dicom_node import process_study
    from lungcad.dicom_out import ModelChooser

    report = process_study(args.url, args.study, ModelChooser(args.model),
                           heatmap=not args.no_heatmap)
    for uid, why in report.skipped:
        print(f"lungcad pacs: skipped: {uid}: {why}", file=sys.stderr)
    for uid, message in report.failed:
        print(f"lungcad pacs: failed: {uid}: {message}", file=sys.stderr)
    print(f"lungcad pacs: study {args.study}: {report.line()}")
    return 1 if report.failed else 0
