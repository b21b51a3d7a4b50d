"""``lungcad data import``: a box-annotated set (NODE21, COCO, VOC, CVAT, YOLO, ChestX-Det, NIH)
into a lungcad dataset: ``labels.csv`` (one row an image: ``label`` lesion / no_lesion, width,
height, spacing_mm where known), ``lesions.csv`` (one row a box, in the image's own pixels) and
``images/`` (links to the images where they lie, or copies with ``--copy``; never re-encoded).

Everything is read and checked before anything is written: a missing image, a box outside its
image or a malformed annotation file stops the import with one line naming the file and the
entry, and the output folder is not created. The output is built in a hidden folder beside it
and renamed into place at the end.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lungcad.data.annotation_formats import Entry, read_annotations
from lungcad.data.lesions import LESIONS_FILE, check_lesions, lesions_csv_text, normalise_label
from lungcad.data.manifest import LABELS_FILE
from lungcad.errors import LungcadError

POSITIVE, NEGATIVE = "lesion", "no_lesion"
TOLERANCE_PX = 1e-6


@dataclass
class ImportResult:
    out: Path
    images: int
    lesions: int
    by_label: dict[str, int]
    dropped: dict[str, int] = field(default_factory=dict)   # labels left out (--labels)
    spacing: dict[str, int] = field(default_factory=dict)   # images by spacing source


def _image_files(folder: Path) -> dict[str, Path]:
    """Stem -> file under ``folder`` (for YOLO label files, which name no image)."""
    from lungcad.io import IMAGE_SUFFIXES

    found: dict[str, Path] = {}
    for p in sorted(folder.rglob("*")):
        name = p.name.lower()
        if p.is_file() and (p.suffix.lower() in IMAGE_SUFFIXES or name.endswith(".nii.gz")):
            stem = p.name[:-7] if name.endswith(".nii.gz") else p.stem
            found.setdefault(stem, p)
    return found


def _locate(entry: Entry, images: Path, by_stem: dict[str, Path] | None) -> Path:
    if by_stem is not None:
        if entry.image not in by_stem:
            raise LungcadError(f"{entry.where}: no image named {entry.image}.* in {images}")
        return by_stem[entry.image]
    for candidate in (images / entry.image, images / Path(entry.image).name):
        if candidate.is_file():
            return candidate
    raise LungcadError(f"{entry.where}: image {entry.image} not found in {images}")


def _boxes_in_pixels(entry: Entry, height: int, width: int) -> list[tuple]:
    """(x0, y0, x1, y1, label) per box, checked to lie inside the image."""
    out = []
    for b in entry.boxes:
        x0, y0, x1, y1 = b.x0, b.y0, b.x1, b.y1
        if b.normalised:
            x0, x1 = x0 * width - 0.5, x1 * width - 0.5
            y0, y1 = y0 * height - 0.5, y1 * height - 0.5
        if (x0 < -0.5 - TOLERANCE_PX or y0 < -0.5 - TOLERANCE_PX
                or x1 > width - 0.5 + TOLERANCE_PX or y1 > height - 0.5 + TOLERANCE_PX):
            raise LungcadError(f"{b.where}: the box lies (partly) outside the {width}x{height} "
                               f"image {entry.image}")
        out.append((x0, y0, x1, y1, normalise_label(b.label)))
    return out


def _spacing(meta, given: float | None) -> tuple[float, str]:
    spacing = getattr(meta, "pixel_spacing_mm", None)
    if spacing is not None:
        return float(np.sqrt(float(spacing[0]) * float(spacing[1]))), "image header"
    if given is not None:
        return float(given), "--spacing-mm"
    return float("nan"), ""


def collect(fmt: str, sources: list[Path], images: Path, keep: set[str] | None = None,
            spacing_mm: float | None = None) -> tuple[pd.DataFrame, pd.DataFrame, list[Path],
                                                      dict[str, int]]:
    """labels table, lesions table, the source file of each labels row, and the lesions left
    out by ``keep`` (by label). Reads every image (size, header spacing); writes nothing."""
    from lungcad.io import load_image

    if not images.is_dir():
        raise LungcadError(f"--images {images} is not a folder")
    entries = read_annotations(fmt, sources)
    if not entries:
        raise LungcadError(f"{', '.join(map(str, sources))}: no image entries found")
    by_stem = _image_files(images) if fmt == "yolo" else None
    merged: dict[Path, list[Entry]] = {}
    for entry in entries:
        merged.setdefault(_locate(entry, images, by_stem).resolve(), []).append(entry)
    labels, lesions, files, dropped = [], [], [], {}
    base = images.resolve()
    for file, group in merged.items():
        try:
            loaded = load_image(file)
        except LungcadError as exc:
            raise LungcadError(f"{group[0].where}: {exc}") from None
        height, width = loaded.array.shape
        rel = "images/" + (file.relative_to(base).as_posix() if base in file.parents
                           else file.name)
        boxes = [b for e in group for b in _boxes_in_pixels(e, height, width)]
        for b in boxes:
            if keep is not None and b[4] not in keep:
                dropped[b[4]] = dropped.get(b[4], 0) + 1
                continue
            lesions.append({"path": rel, "x0": b[0], "y0": b[1], "x1": b[2], "y1": b[3],
                            "label": b[4]})
        kept = sum(1 for b in boxes if keep is None or b[4] in keep)
        spacing, source = _spacing(loaded.meta, spacing_mm)
        labels.append({"path": rel, "label": POSITIVE if kept else NEGATIVE, "width": width,
                       "height": height, "spacing_mm": spacing, "spacing_from": source,
                       "source_image": file.name, "n_lesions": kept})
        files.append(file)
    table = pd.DataFrame(labels)
    clashes = table["path"][table["path"].duplicated()].tolist()
    if clashes:
        raise LungcadError(f"two images would both be {clashes[0]} in the dataset; keep the "
                           "images in one folder tree under --images")
    lesion_table = pd.DataFrame(lesions, columns=["path", "x0", "y0", "x1", "y1", "label"])
    check_lesions(lesion_table, table["path"], "the imported lesions",
                  {p: (h, w) for p, h, w in zip(table["path"], table["height"], table["width"])})
    return table, lesion_table, files, dropped


def import_dataset(fmt: str, sources: list[Path], images: Path, out: Path, copy: bool = False,
                   keep: set[str] | None = None, spacing_mm: float | None = None
                   ) -> ImportResult:
    """Import (module docstring). ``keep``: lesion labels to keep (others dropped, counted)."""
    from lungcad.data.prepare import check_out_folder

    if spacing_mm is not None and not (np.isfinite(spacing_mm) and spacing_mm > 0):
        raise LungcadError(f"--spacing-mm must be a positive number of millimetres, not "
                           f"{spacing_mm}")
    check_out_folder(images, out)
    keep = {normalise_label(k) for k in keep} if keep else None
    table, lesions, files, dropped = collect(fmt, sources, images, keep, spacing_mm)
    partial = out.parent / f".{out.name}.partial-{os.getpid()}"
    if partial.exists():
        shutil.rmtree(partial)
    try:
        for rel, file in zip(table["path"], files):
            target = partial / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if copy:
                shutil.copy2(file, target)
            else:
                os.symlink(file, target)
        table.to_csv(partial / LABELS_FILE, index=False, lineterminator="\n", float_format="%.6g")
        (partial / LESIONS_FILE).write_text(lesions_csv_text(lesions))
        if out.exists():
            out.rmdir()  # empty (check_out_folder)
        partial.rename(out)
    except OSError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise LungcadError(f"cannot write {out}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    counts = lesions["label"].value_counts().sort_index()
    spacing = table["spacing_from"].replace("", "none (assumed when used)").value_counts()
    return ImportResult(out, len(table), len(lesions), {str(k): int(v) for k, v in counts.items()},
                        dropped, {str(k): int(v) for k, v in spacing.items()})
