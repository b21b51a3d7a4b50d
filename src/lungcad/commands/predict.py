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

Models with a domain check (every bundled model) add in_domain and domain_score: an image
unlike the model's training images is still answered, with in_domain False and "OUT OF
DOMAIN" in its verdict line; an image of the other modality (a CT slice to a radiograph model,
or the reverse: DICOM Modality tag, else the image) is refused with a message. MODEL auto
runs each image through the bundled model(s) of its modality, with modality columns.

Detector models (e.g. jsrt-nodules) also mark where they see nodules: one row a mark (path,
x and y in the image's own pixels, radius_mm, score, malignancy) in findings.csv beside the
predictions (--findings to choose; lungcad evaluate --findings scores them), and per image
n_marks, top_mark_score and malignancy (image only); where the model has an age/sex model,
malignancy_age_sex from --age/--sex, else each DICOM's PatientAge/PatientSex, else the
dataset's age and sex columns (a missing one takes the training mean: age_sex_note says so).

Models that record their training images (every bundled model) add in_training_data: True for
an image that was one of them (its pixels' SHA-256); the verdict line and a note say so, and
lungcad evaluate will not call a score on such images a validation.

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
    parser.add_argument("model", metavar="MODEL",
                        help="model directory, run folder, bundled name, or auto (the bundled "
                             "model(s) of each image's modality: DICOM tag, else the image)")
    parser.add_argument("inputs", metavar="INPUT", nargs="*",
                        help="image files, folders, or one dataset folder")
    parser.add_argument("--list", type=Path, metavar="FILES.txt",
                        help="also predict the files listed here, one path a line (relative "
                             "paths from the list's folder; # starts a comment)")
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
    parser.add_argument("--dicom-out", type=Path, metavar="DIR",
                        help="also write a DICOM SR and overlay (secondary capture) per DICOM "
                             "image into DIR (docs/dicom.md)")
    parser.add_argument("--age", metavar="YEARS",
                        help="detector models: the patient's age (years, or DICOM 063Y) for the "
                             "malignancy with age and sex, for every image given (default: each "
                             "DICOM's PatientAge, else the dataset's age column)")
    parser.add_argument("--sex", metavar="M|F",
                        help="detector models: the patient's sex, as --age")
    parser.add_argument("--findings", type=Path, metavar="FINDINGS.csv",
                        help="detector models: where to write the marks, one row a mark (default: "
                             "findings.csv beside the predictions, or <stem>_findings.csv)")
    parser.add_argument("--runtime", choices=("torch", "onnx"), default="torch",
                        help="run the model with PyTorch (default) or ONNX Runtime")
    from lungcad.commands.predict_ray import add_options

    add_options(parser)
    parser.set_defaults(func=run)


def _report_failure(path: str, message: str) -> None:
    detail = message if path in message else f"{path}: {message}"
    detail = detail.replace("pass frame=N", "pass --frame N")  # the library's words, as options
    print(f"lungcad predict: failed: {detail}", file=sys.stderr)


def _print_marks(row, findings) -> None:
    """A detector's malignancy scores and marks on the one image, strongest first."""
    line = f"  malignancy (image only) {row['malignancy']:.2f}"
    if "malignancy_age_sex" in row.index:
        note = f"; {row['age_sex_note']}" if row["age_sex_note"] else ""
        line += f", with age and sex {row['malignancy_age_sex']:.2f}{note}"
    print(line)
    if findings.empty:
        print("  no nodule marks")
    for k, row in enumerate(findings.itertuples(), 1):
        malignancy = ("" if row.malignancy is None or row.malignancy != row.malignancy
                      else f", malignancy {row.malignancy:.2f}")
        print(f"  mark {k}: x {row.x:.0f}, y {row.y:.0f} px, radius {row.radius_mm:.0f} mm, "
              f"score {row.score:.2f}{malignancy}")


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def run(args: argparse.Namespace) -> int:
    from lungcad.errors import LungcadError
    from lungcad.inference import load_model
    from lungcad.prediction import (check_output, collect_input, model_label, model_task,
                                    predict_input, write_predictions)

    from lungcad.commands.predict_ray import check_local, run_ray

    if args.list is not None:
        from lungcad.image_files import read_file_list

        args.inputs = list(args.inputs) + read_file_list(args.list)
    if args.engine == "ray":
        return run_ray(args, _report_failure)
    check_local(args)
    if args.model == "auto":
        from lungcad.commands.predict_auto import run_auto

        return run_auto(args, _report_failure)
    if args.split is None and (args.part is not None or args.fold is not None):
        raise LungcadError("--part and --fold choose images from a split file: give --split too")
    if args.frame is not None and args.frame < 0:
        raise LungcadError(f"--frame counts from 0, not {args.frame}")
    if args.frame is not None and args.heatmaps is not None:
        raise LungcadError("--heatmaps cannot be combined with --frame yet; predict the frame "
                           "without --heatmaps")
    if args.out is not None:  # before any image is predicted: a run must not end unwritable
        check_output(args.out)
    if args.findings is not None:
        check_output(args.findings, "--findings")
    if args.age is not None or args.sex is not None:
        from lungcad.detection.clinical import parse_age, parse_sex

        parse_age(args.age, "--age")  # nonsense is refused before any image is predicted
        parse_sex(args.sex, "--sex")
    if args.heatmaps is not None:
        check_output(args.heatmaps, "--heatmaps", folder=True)
    if args.dicom_out is not None:
        check_output(args.dicom_out, "--dicom-out", folder=True)
    if args.heatmaps is not None and args.runtime != "torch":
        raise LungcadError("--heatmaps needs the torch runtime (saliency uses the network's "
                           "gradients); drop --runtime onnx")
    if args.heatmaps is not None:
        from lungcad.explain.saliency import check_method

        check_method(args.heatmap_method)  # before any image is predicted
    model = load_model(args.model, args.runtime)
    if getattr(model, "kind", "classifier") == "segmenter":
        raise LungcadError(f"{model.spec.name} is a segmentation model: it draws lung masks, not "
                           f"class probabilities; use `lungcad segment {args.model} ...`")
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
                           frame=args.frame, age=args.age, sex=args.sex)
    failed = len(result.failures)
    if verdict:
        if len(result.table):
            print(result.prediction(model, 0).line(Path(result.table["path"][0]).name))
            if result.findings is not None:
                _print_marks(result.table.iloc[0], result.findings)
    elif len(result.table):
        out = args.out or Path("predictions.csv")
        write_predictions(result.table, out)
        threshold = model.spec.decision_threshold
        rule = f", threshold {threshold:.3g}" if threshold is not None else ""
        print(f"wrote {len(result.table)} prediction(s) to {out} (model {model_label(model)}"
              f"{rule})")
        from lungcad.evaluation.in_sample import training_images_note

        in_sample = training_images_note(result.table)
        if in_sample:
            print(f"lungcad predict: note: {in_sample}", file=sys.stderr)
    if result.findings is not None and (not verdict or args.findings is not None):
        from lungcad.detection.batch import findings_path_for, write_findings

        marks_out = args.findings or findings_path_for(args.out or Path("predictions.csv"))
        write_findings(result.findings, marks_out)
        print(f"wrote {len(result.findings)} mark(s) on {len(result.table)} image(s) to "
              f"{marks_out}")
    elif args.findings is not None:
        print(f"lungcad predict: note: {model_label(model)} does not mark nodules"
              + (" on the onnx runtime" if args.runtime == "onnx" else "")
              + f"; {args.findings} not written", file=sys.stderr)

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

    dicom_failed = 0
    if args.dicom_out is not None:
        from lungcad.dicom_out.batch import write_for_prediction

        dicom_failed = write_for_prediction(model, inp, result, args.dicom_out, _report_failure,
                                            heatmap=args.runtime == "torch")
    summary = []
    if dicom_failed:
        summary.append(f"{dicom_failed} image(s) got no DICOM results")
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
