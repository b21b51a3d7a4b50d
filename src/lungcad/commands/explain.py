"""``lungcad explain MODEL IMAGE... --out DIR``: saliency heatmaps, and their localisation scores.

Per image: ``<stem>_overlay.png`` (the image at its own size with the map blended in and the
prediction written on it) and ``<stem>_saliency.npy`` (the raw [0, 1] map at the image's size).
With ``--dataset D --localisation``: maps for D's nodule images (or a split's part), scored
against the nodule positions: ``localisation.json`` + ``localisation.csv``. The lung share uses
D's lung masks (``mask_path``) where it has them, else those the bundled ``jsrt-lungs`` model
predicts (``--lung-mask-model``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lungcad.segmentation import LUNG_MODEL


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "explain", help="saliency heatmaps for images, or their localisation scores on a dataset",
        description="Write <stem>_overlay.png and <stem>_saliency.npy per image into --out. With "
                    "--dataset DIR --localisation, compute maps for the dataset's nodule images "
                    "and score them against the nodule positions (localisation.json and .csv).")
    parser.add_argument("model", help="model directory, training run folder, or bundled model name")
    parser.add_argument("images", nargs="*", type=Path, help="image files (any format "
                        "lungcad reads: PNG, JPEG, DICOM, JSRT .IMG, .npy)")
    parser.add_argument("--out", type=Path, required=True, help="folder to write into")
    from lungcad.explain.saliency import METHODS

    parser.add_argument("--method", default="gradcam", choices=list(METHODS),
                        help="saliency method (default gradcam): " + "; ".join(
                            f"{k}: {v}" for k, v in METHODS.items()))
    parser.add_argument("--class", dest="target_class", metavar="NAME",
                        help="class whose evidence to show (default: the positive class of a "
                             "binary model, the predicted class of a multi-class one)")
    parser.add_argument("--target-layer", help="network layer for CAM methods (a dotted module "
                        "name; default the architecture's, see `lungcad models`)")
    data = parser.add_argument_group("dataset and localisation")
    data.add_argument("--dataset", type=Path, help="dataset folder (labels.csv + images) instead "
                      "of image files")
    data.add_argument("--split", type=Path, help="split JSON: use one part of one fold")
    data.add_argument("--fold", type=int, default=0, help="fold of --split (default 0)")
    data.add_argument("--part", default="test", choices=["train", "val", "test"],
                      help="part of the fold (default test)")
    data.add_argument("--localisation", action="store_true",
                      help="score maps of the nodule images against the nodule positions")
    from lungcad.jsrt_geometry import JSRT_PIXEL_MM_AT_512
    from lungcad.explain import defaults as loc

    data.add_argument("--margin-mm", type=float, default=loc.DEFAULT_MARGIN_MM,
                      help="a peak hits when within nodule radius + this (default %(default)s)")
    data.add_argument("--pixel-mm", type=float, default=JSRT_PIXEL_MM_AT_512,
                      help="pixel size of the coordinate frame in mm (default %(default)s: "
                           "JSRT at 512 px)")
    data.add_argument("--peak-distance-mm", type=float, default=loc.DEFAULT_PEAK_DISTANCE_MM,
                      help="minimum distance between the top peaks (default %(default)s)")
    data.add_argument("--lung-mask-model", default=LUNG_MODEL, metavar="MODEL",
                      help="segmentation model whose predicted lung masks give the lung share "
                           "of images without a reference mask (mask_path in labels.csv); "
                           "default %(default)s where it is installed; 'none' for no predicted "
                           "masks")
    data.add_argument("--overlays", action="store_true", help="with --localisation, also write "
                      "overlays/<stem>_overlay.png with the nodule circle and the map's peak")
    data.add_argument("--batch-size", type=int, default=8, help="images per pass (default 8)")
    parser.set_defaults(func=run)


def _lung_mask_model(args: argparse.Namespace) -> str | None:
    """The model to predict missing lung masks with, or None."""
    from lungcad.segmentation import installed_lung_model

    name = args.lung_mask_model
    if name is None or name.lower() == "none":
        return None
    if name == LUNG_MODEL:
        return installed_lung_model()  # not installed: no lung share without a reference mask
    return name


def _check_arguments(args: argparse.Namespace) -> None:
    from lungcad.errors import LungcadError

    if args.dataset is None and not args.images:
        raise LungcadError("give image files, or --dataset DIR")
    if args.dataset is not None and args.images:
        raise LungcadError("give either image files or --dataset, not both")
    if args.localisation and args.dataset is None:
        raise LungcadError("--localisation needs --dataset DIR (a dataset with nodule positions)")
    if args.split is None and args.fold != 0:
        raise LungcadError("--fold needs --split")
    if args.batch_size < 1:
        raise LungcadError(f"--batch-size must be at least 1, got {args.batch_size}")


def run(args: argparse.Namespace) -> int:
    from lungcad.inference import load_model

    _check_arguments(args)
    model = load_model(args.model)
    if model.kind == "segmenter":
        from lungcad.errors import LungcadError

        raise LungcadError(f"{args.model} is a segmentation model: it outlines the lungs and "
                           "has no class evidence to explain; use `lungcad segment` for it")
    if args.localisation:
        return _run_localisation(args, model)
    if args.dataset is not None:
        from lungcad.explain.dataset import select_rows

        manifest, rows, _ = select_rows(args.dataset, args.split, args.fold, args.part)
        paths = [manifest.image_path(p) for p in rows["path"]]
    else:
        paths = list(args.images)
    return _run_images(args, model, paths)


def _run_images(args: argparse.Namespace, model, paths: list[Path]) -> int:
    from lungcad.errors import LungcadError
    from lungcad.explain.files import output_stems, write_heatmap
    from lungcad.explain.saliency import Explainer

    explainer = Explainer(model, args.method, args.target_layer)
    if args.target_class is not None:
        explainer.target_index(args.target_class)  # a wrong class name fails before any image
    failed = 0
    for path, stem in zip(paths, output_stems(paths)):
        try:
            files = write_heatmap(explainer, path, args.out, stem, args.target_class)
        except LungcadError as exc:
            failed += 1
            print(f"lungcad explain: error: {exc}" if str(path) in str(exc)
                  else f"lungcad explain: error: {path}: {exc}", file=sys.stderr)
            continue
        print(f"{path}: {files.prediction.label} -> {files.overlay} ({explainer.method} for "
              f"{files.target_class})")
    if failed:
        print(f"lungcad explain: {failed} of {len(paths)} image(s) failed", file=sys.stderr)
        return 1
    return 0


def _run_localisation(args: argparse.Namespace, model) -> int:
    from lungcad.explain.dataset import format_summary, localise_dataset, write_localisation

    def progress(done: int, total: int) -> None:
        print(f"\rmaps: {done}/{total}", end="", file=sys.stderr, flush=True)

    run = localise_dataset(
        model, args.dataset, method=args.method, target_class=args.target_class,
        split=args.split, fold=args.fold, part=args.part, margin_mm=args.margin_mm,
        pixel_mm=args.pixel_mm, peak_distance_mm=args.peak_distance_mm,
        batch_size=args.batch_size, target_layer=args.target_layer,
        progress=progress if sys.stderr.isatty() else None,
        lung_mask_model=_lung_mask_model(args))
    if sys.stderr.isatty():
        print(file=sys.stderr)
    written = write_localisation(run, args.out, overlays=args.overlays)
    print(format_summary(run.result))
    masks = run.result.get("lung_masks")
    if masks and (masks["predicted"] or masks["implausible"]):
        print(f"lung share: {masks['predicted']} image(s) without a reference lung mask use the "
              f"mask {masks['model']} predicts"
              + (f"; {len(masks['implausible'])} with no plausible predicted pair of lungs have "
                 "none" if masks["implausible"] else ""))
    print(f"wrote {written[0]} and {written[1]}"
          + (f" and {len(written) - 2} overlays" if len(written) > 2 else ""))
    for path, error in run.failed:
        print(f"lungcad explain: error: {path}: {error}", file=sys.stderr)
    return 1 if run.failed else 0
