"""``lungcad predict MODEL INPUT...``: predict images with a model; write a predictions CSV."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DESCRIPTION = """\
Predict images with a model and write one row per image: path, true_label (labelled dataset
input), prob_<class> for every class, predicted_label at the model's threshold, model
(name@version), fold (with --split) and the dataset's metadata columns. The file is what
`lungcad evaluate` reads.

MODEL: a model directory, a training run folder, or a bundled model name.
INPUT: image files (JSRT .IMG, PNG, JPEG, TIFF, BMP, DICOM, .npy), folders (searched
recursively; files that are not images are skipped with a note), or one dataset folder (with
labels.csv), optionally restricted to one part of one fold of a split file. Multi-frame files
(DICOM, TIFF) need --frame N.

With a single image and no --out, prints a one-line verdict instead. An image that cannot be
read, and an entry that cannot be used (a folder or file that cannot be read, a broken or
looping symbolic link, a FIFO, a symbolic link to a folder inside a folder: not followed), is
named on stderr and counted in the summary; the others go on, and the exit status is 1.
The output is checked before any image is predicted. Text cells that a spreadsheet would run
as a formula (a file named =...) are written with a leading ' (lungcad evaluate removes it).
Research software, not a medical device.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict", help="predict images with a model; write a predictions CSV",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", metavar="MODEL", help="model directory, run folder or bundled name")
    parser.add_argument("inputs", metavar="INPUT", nargs="+",
                        help="image files, folders, or one dataset folder")
    parser.add_argument("--out", type=Path, metavar="PREDICTIONS.csv",
                        help="predictions file to write (default: predictions.csv, or a one-line "
                             "verdict for a single image)")
    parser.add_argument("--split", type=Path, metavar="SPLIT.json",
                        help="predict only one part of a fold of this split (dataset input)")
    parser.add_argument("--part", choices=("test", "val", "train"), default=None,
                        help="which part of the fold (default test; needs --split)")
    parser.add_argument("--fold", type=int, metavar="K",
                        help="which fold of the split (needed when it has several)")
    parser.add_argument("--frame", type=int, metavar="N",
                        help="which frame (from 0) of multi-frame files (DICOM, TIFF) to predict")
    parser.add_argument("--batch-size", type=int, default=16, metavar="N",
                        help="images per forward pass (default 16)")
    parser.add_argument("--heatmaps", type=Path, metavar="DIR",
                        help="also write a saliency overlay PNG and map (.npy) per image into DIR")
    parser.add_argument("--heatmap-method", default="gradcam", metavar="METHOD",
                        help="saliency method for --heatmaps: gradcam (default), gradcam++, "
                             "layercam or occlusion")
    parser.add_argument("--runtime", choices=("torch", "onnx"), default="torch",
                        help="run the model with PyTorch (default) or ONNX Runtime")
    parser.set_defaults(func=run)


def _report_failure(path: str, message: str) -> None:
    detail = message if path in message else f"{path}: {message}"
    detail = detail.replace("pass frame=N", "pass --frame N")  # the library's words, as options
    print(f"lungcad predict: failed: {detail}", file=sys.stderr)


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def run(args: argparse.Namespace) -> int:
    from lungcad.errors import LungcadError
    from lungcad.inference import load_model
    from lungcad.prediction import (check_output, collect_input, model_label, model_task,
                                    predict_input, verdict_line, write_predictions)

    if args.split is None and (args.part is not None or args.fold is not None):
        raise LungcadError("--part and --fold choose images from a split file: give --split too")
    if args.frame is not None and args.frame < 0:
        raise LungcadError(f"--frame counts from 0, not {args.frame}")
    if args.frame is not None and args.heatmaps is not None:
        raise LungcadError("--heatmaps cannot be combined with --frame yet; predict the frame "
                           "without --heatmaps")
    if args.out is not None:  # before any image is predicted: a run must not end unwritable
        check_output(args.out)
    if args.heatmaps is not None:
        check_output(args.heatmaps, "--heatmaps", folder=True)
    if args.heatmaps is not None and args.runtime != "torch":
        raise LungcadError("--heatmaps needs the torch runtime (saliency uses the network's "
                           "gradients); drop --runtime onnx")
    if args.heatmaps is not None:
        from lungcad.explain.saliency import check_method

        check_method(args.heatmap_method)  # before any image is predicted
    model = load_model(args.model, args.runtime)
    task = model_task(model)
    inp = collect_input(args.inputs, task, split_path=args.split, part=args.part or "test",
                        fold=args.fold)
    for note in inp.notes:
        print(f"lungcad predict: note: {note}", file=sys.stderr)
    for path, reason in inp.skipped:
        print(f"lungcad predict: skipped: {path}: {reason}", file=sys.stderr)
    if len(inp) == 0:
        raise LungcadError("no images to predict in " + ", ".join(map(str, args.inputs))
                           + (f" ({_plural(len(inp.skipped), 'entry', 'entries')} skipped, "
                              "named above)" if inp.skipped else ""))
    verdict = len(inp) == 1 and not inp.skipped and args.out is None
    if not verdict and args.out is None:
        check_output(Path("predictions.csv"))

    result = predict_input(model, inp, batch_size=args.batch_size, on_failure=_report_failure,
                           frame=args.frame)
    failed = len(result.failures)
    if verdict:
        if len(result.table):
            print(verdict_line(Path(result.table["path"][0]).name, result.probabilities[0], model))
    elif len(result.table):
        out = args.out or Path("predictions.csv")
        write_predictions(result.table, out)
        threshold = model.spec.threshold if len(model.classes) == 2 else None
        rule = f", threshold {threshold:.3g}" if threshold is not None else ""
        print(f"wrote {len(result.table)} prediction(s) to {out} (model {model_label(model)}"
              f"{rule})")

    if args.heatmaps is not None and len(result.table):
        from lungcad.explain import write_heatmaps

        done = set(result.table["path"])
        files = [f for f, k in zip(inp.files, inp.keys) if k in done]
        errors: list = []
        written = write_heatmaps(model, files, args.heatmaps, args.heatmap_method, errors=errors)
        for path, message in errors:
            _report_failure(str(path), f"heatmap: {message}")
        failed += len(errors)
        print(f"wrote {len(written) // 2} heatmap(s) to {args.heatmaps}")

    summary = []
    if result.failures:
        summary.append(f"{len(result.failures)} of {len(inp)} image(s) could not be predicted")
    if failed > len(result.failures):
        summary.append(f"{failed - len(result.failures)} heatmap(s) failed")
    if inp.skipped:
        summary.append(f"{_plural(len(inp.skipped), 'entry', 'entries')} skipped (named above)")
    if summary:
        print("lungcad predict: " + "; ".join(summary), file=sys.stderr)
        return 1
    return 0
