"""``lungcad export MODEL --format onnx|torchscript --out FILE``: a checked, self-contained export."""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = """\
Export a model to ONNX (default) or TorchScript. The file takes preprocessed images
(batch, channels, size, size; any batch size) and gives class probabilities (batch, classes);
a detector's ONNX file also gives its cell maps (output "cells"), so lungcad marks nodules on
ONNX Runtime as it does on PyTorch (detectors export to ONNX only).
The model.json (preprocessing, classes, threshold), the model card and the export details travel
inside the file (ONNX metadata_props, TorchScript _extra_files) and beside it as FILE.json.

Before anything is written, the export is run on random inputs at batch sizes 1 and 3 and its
probabilities are compared with PyTorch's; the command fails if they differ by more than
--tolerance. Run an exported ONNX file with `lungcad predict FILE.onnx INPUT --runtime onnx`
or `lungcad serve FILE.onnx --runtime onnx`.

MODEL: a model directory, a training run folder, or a bundled model name.
"""

FORMATS = ("onnx", "torchscript")


def register(subparsers) -> None:
    from lungcad.export import DEFAULT_TOLERANCE

    parser = subparsers.add_parser(
        "export", help="export a model to ONNX or TorchScript, checked against PyTorch",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", metavar="MODEL", help="model directory, run folder or bundled name")
    parser.add_argument("--format", choices=FORMATS, default="onnx", dest="fmt",
                        help="onnx (default) or torchscript")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE",
                        help="file to write, e.g. model.onnx or model.pt (FILE.json is written "
                             "beside it)")
    parser.add_argument("--opset", type=int, default=None, metavar="N",
                        help="ONNX opset version (default 17; ONNX only)")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, metavar="T",
                        help=f"largest allowed probability difference from PyTorch "
                             f"(default {DEFAULT_TOLERANCE:g})")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lungcad.errors import LungcadError
    from lungcad.inference import load_model

    if args.opset is not None and args.fmt != "onnx":
        raise LungcadError("--opset applies to --format onnx only")
    if not args.tolerance > 0:
        raise LungcadError(f"--tolerance must be positive, not {args.tolerance}")
    model = load_model(args.model)
    if model.kind == "segmenter" or (model.kind == "detector" and args.fmt != "onnx"):
        raise LungcadError(f"{args.model} is a {model.kind}: lungcad exports classifiers, and "
                           "detectors to ONNX (with their cell maps, from which the marks are "
                           "drawn), only")
    if args.fmt == "onnx":
        from lungcad.export.onnx_export import DEFAULT_OPSET, export_onnx

        report = export_onnx(model, args.out, args.opset or DEFAULT_OPSET, args.tolerance)
    else:
        from lungcad.export.torchscript import export_torchscript

        report = export_torchscript(model, args.out, args.tolerance)
    print(report.summary())
    return 0
