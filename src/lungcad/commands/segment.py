"""``lungcad segment MODEL IMAGE... --out DIR``: lung-field masks, outlines and measures."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DESCRIPTION = """\
Segment the lung fields of chest radiographs with a segmentation model (such as the bundled
jsrt-lungs) and write, per image, into DIR:

  <stem>_mask.png     the mask at the image's own size: 255 = lung, 0 = background
  <stem>_overlay.png  the image with each lung's outline (the patient's right lung in cyan, on
                      the image's left in a PA view; the left lung in orange) and its measures
                      (an image under 512 px is enlarged so that the text stays legible)

and one DIR/segmentation.csv: path, plausible, warning, per side the area and height in pixels
(and in mm² / mm where the pixel spacing is known, e.g. from DICOM), lung_fraction, model,
in_domain and domain_score (the model's domain check, as classifiers have it: an image unlike
the model's training images, or neither a chest radiograph nor a CT slice, is flagged).

IMAGE: image files (JSRT .IMG, PNG, JPEG, TIFF, BMP, DICOM, .npy) or folders (searched
recursively; files that are not images are skipped with a note). An image with no plausible pair
of lungs (a CT slice, a lateral view), or a DICOM CT slice, gets a one-line warning and plausible=False in the CSV.
An image that cannot be read is reported on stderr, the others go on, and the exit status is 1.
Research software, not a medical device.
"""

CSV_FILE = "segmentation.csv"
MASK_SUFFIX = "_mask.png"
OVERLAY_SUFFIX = "_overlay.png"
MEASURE_COLUMNS = ("right_area_px", "right_height_px", "left_area_px", "left_height_px",
                   "lung_fraction", "right_area_mm2", "right_height_mm", "left_area_mm2",
                   "left_height_mm")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "segment", help="lung-field masks, outlines and per-side measures of chest radiographs",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", metavar="MODEL",
                        help="a segmentation model: bundled name (jsrt-lungs), model directory "
                             "or run folder")
    parser.add_argument("inputs", metavar="IMAGE", nargs="+", help="image files or folders")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="folder for the masks, overlays and segmentation.csv")
    parser.set_defaults(func=run)


def _fail(path: Path, message: str) -> None:
    detail = message if str(path) in message else f"{path}: {message}"
    print(f"lungcad segment: failed: {detail}", file=sys.stderr)


def segment_file(model, path: Path, out: Path, stem: str) -> dict:
    """Segment one image file, write its mask and overlay PNGs, and return its CSV row.
    Raises :class:`LungcadError` for an image that cannot be read or used."""
    from lungcad.explain.outline import (READABLE_SIDE, mask_png, outline_overlay,
                                         summary_text)
    from lungcad.explain.render import png_bytes
    from lungcad.io import load_image
    from lungcad.segmentation.predict import segment

    loaded = load_image(path)
    result = segment(model, loaded.array, spacing_mm=loaded.meta.pixel_spacing_mm,
                     modality=loaded.meta.modality)
    (out / f"{stem}{MASK_SUFFIX}").write_bytes(mask_png(result.mask))
    picture = outline_overlay(loaded.array, result.mask, summary_text(result, model.spec.name),
                              min_side=READABLE_SIDE)
    (out / f"{stem}{OVERLAY_SUFFIX}").write_bytes(png_bytes(picture))
    row = {"path": str(path), "plausible": result.plausible,
           "warning": "; ".join(result.notes())}
    row.update({c: result.measures.get(c) for c in MEASURE_COLUMNS})
    row["model"] = f"{model.spec.name}@{model.spec.version}"
    row.update(in_domain=result.in_domain, domain_score=result.domain_score)
    return {"row": row, "result": result}


def summary_line(name: str, result, out: Path) -> str:
    """One line for one image, ending with the disclaimer."""
    from lungcad.disclaimer import SHORT_DISCLAIMER
    from lungcad.explain.outline import side_lines

    found = ("; ".join(side_lines(result.measures)) if result.plausible
             else "no plausible pair of lungs (see the warning)")
    if result.domain_note:
        found += "; OUT OF DOMAIN (see the warning)"
    return f"{name}: {found}; mask and overlay in {out} \u2014 {SHORT_DISCLAIMER}"


def run(args: argparse.Namespace) -> int:
    import pandas as pd
    from tqdm.auto import tqdm

    from lungcad.atomic import atomic_write
    from lungcad.csvsafe import neutralise_formulas
    from lungcad.errors import LungcadError
    from lungcad.explain.files import output_stems
    from lungcad.inference import load_model
    from lungcad.prediction import PROGRESS_MIN_IMAGES, check_output, file_input

    inp = file_input(args.inputs)
    for note in inp.notes:
        print(f"lungcad segment: note: {note}", file=sys.stderr)
    for path, reason in inp.skipped:
        print(f"lungcad segment: skipped: {path}: {reason}", file=sys.stderr)
    model = load_model(args.model)
    if model.kind != "segmenter":
        raise LungcadError(f"{args.model} is a classifier ({model.spec.task}: "
                           f"{', '.join(model.classes)}), not a segmentation model; use "
                           "`lungcad predict` for it, or segment with jsrt-lungs")
    if len(inp) == 0:
        raise LungcadError("no images to segment in " + ", ".join(map(str, args.inputs)))
    check_output(args.out, "--out", folder=True)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LungcadError(f"cannot write --out {args.out}: {exc.strerror or exc}") from None

    rows, failed, last = [], 0, None
    bar = tqdm(total=len(inp), unit="image", desc="segmenting", file=sys.stderr,
               disable=len(inp) < PROGRESS_MIN_IMAGES or None)
    for path, stem in zip(inp.files, output_stems(inp.files)):
        try:
            done = segment_file(model, path, args.out, stem)
        except LungcadError as exc:
            _fail(path, str(exc))
            failed += 1
        else:
            rows.append(done["row"])
            last = done["result"]
            if last.notes():
                print(f"lungcad segment: warning: {path}: {'; '.join(last.notes())}",
                      file=sys.stderr)
        bar.update(1)
    bar.close()

    if rows:
        table = pd.DataFrame(rows, columns=["path", "plausible", "warning", *MEASURE_COLUMNS,
                                            "model", "in_domain", "domain_score"])
        csv = args.out / CSV_FILE
        try:
            atomic_write(csv, neutralise_formulas(table).to_csv(
                index=False, lineterminator="\n").encode())
        except OSError as exc:
            raise LungcadError(f"cannot write {csv}: {exc.strerror or exc}") from None
        if len(inp) == 1:
            print(summary_line(Path(rows[0]["path"]).name, last, args.out))
        else:
            print(f"segmented {len(rows)} image(s) with {model.spec.name}: masks and overlays "
                  f"in {args.out}, measures in {csv}")
    if failed:
        print(f"lungcad segment: {failed} of {len(inp)} image(s) could not be segmented",
              file=sys.stderr)
    if inp.skipped:
        print(f"lungcad segment: {len(inp.skipped)} entr{'y' if len(inp.skipped) == 1 else 'ies'}"
              " skipped (named above)", file=sys.stderr)
    return 1 if failed or inp.skipped else 0
