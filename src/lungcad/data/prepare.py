"""`lungcad data prepare`: convert sources into the one dataset format (images + labels.csv).

Formats:

* ``jsrt``: JSRT raw ``.IMG`` files plus the clinical data as the Kaggle ``jsrt_metadata.csv``
  (``study_id,subtlety,size,age,gender,x,y,state,position,diagnosis``; x, y in the 2048 matrix;
  ``?`` for an unknown age; study_id with or without an extension). Written with the columns of
  the shared JSRT set: path,label,has_nodule,malignant,subtlety,size_mm,age,sex,x_2048,y_2048,
  x_N,y_N,position,diagnosis, then width,height,spacing_mm (N, N, 0.175 * 2048 / N), and a
  ``lesions.csv`` (:mod:`lungcad.data.lesions`) with each nodule in the image's own pixels. Non-nodule cases get no nodule attributes (subtlety, size,
  coordinates, position), whatever placeholder the source holds.
* ``folders``: one sub-folder per class; names are normalised ("Bengin cases" -> benign).
* ``manifest``: re-size an existing dataset: every column kept, coordinates in an N x N frame
  added (``x_N``/``y_N``), plain ``x``/``y`` pixel columns and ``width``/``height`` rescaled,
  masks (``mask_path``) resized and kept binary.

Images are written as PNG, 16-bit where the source has more than 8 bits, resized (square, N x N)
with area interpolation. Work runs in parallel processes; a file that fails is reported by name
and the rest go on. The source is never written to.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lungcad.jsrt_geometry import JSRT_MATRIX, jsrt_mm_per_pixel
from lungcad.data.manifest import LABELS_FILE, Manifest
from lungcad.errors import LungcadError
from lungcad.io import IMAGE_SUFFIXES

JSRT_METADATA_COLUMNS = ("study_id", "subtlety", "size", "age", "gender", "x", "y", "state",
                         "position", "diagnosis")
FRAME_COLUMN = re.compile(r"^([xy])_(\d+)$")
# Files with other extensions in class folders (notes, thumbnails databases) are not images;
# files with no extension are kept, as DICOM files often have none.
FOLDER_IMAGE_SUFFIXES = IMAGE_SUFFIXES | {""}
MIN_SIZE = 32


@dataclass
class Job:
    source: str            # image to read
    target: str            # PNG to write
    size: int | None
    mask_source: str | None = None
    mask_target: str | None = None


@dataclass
class JobResult:
    error: str | None = None
    height: int = 0
    width: int = 0


@dataclass
class PrepareResult:
    out: Path
    written: int
    failed: list[tuple[str, str]] = field(default_factory=list)   # (name, why)
    skipped: list[str] = field(default_factory=list)               # not images, not attempted


# zlib level of the PNGs written: 1 instead of Pillow's 6. The encoder is the largest cost of a
# file (docs/benchmarks.md, "Data preparation"); level 1 writes a 16-bit JSRT image in about
# two thirds of the time for a file about a fifth larger; the pixels are the same.
PNG_COMPRESS_LEVEL = 1


def _write_png(array: np.ndarray, path: Path, sixteen_bit: bool) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    clipped = np.clip(array, 0, 1)
    if sixteen_bit:
        image = Image.fromarray(np.round(clipped * 65535).astype(np.uint16))
    else:
        image = Image.fromarray(np.round(clipped * 255).astype(np.uint8))
    partial = path.with_name(path.name + ".partial.png")
    image.save(partial, compress_level=PNG_COMPRESS_LEVEL)
    partial.replace(path)


def convert_one(job: Job) -> JobResult:
    """Read, resize and write one image (and its mask); never raises."""
    from lungcad.io import load_image
    from lungcad.preprocess import resize_area

    try:
        loaded = load_image(job.source)
        height, width = loaded.array.shape
        array = loaded.array if job.size is None else resize_area(loaded.array, job.size)
        _write_png(array, Path(job.target), sixteen_bit=loaded.meta.bit_depth > 8)
        if job.mask_source:
            try:
                mask = load_image(job.mask_source).array
            except LungcadError as exc:
                return JobResult(f"mask: {exc}")
            if mask.shape != (height, width):
                return JobResult(f"mask {job.mask_source} is {mask.shape[1]}x{mask.shape[0]}, "
                                 f"the image {width}x{height}")
            if job.size is not None:
                mask = resize_area(mask, job.size)
            _write_png((mask >= 0.5).astype(np.float32), Path(job.mask_target), sixteen_bit=False)
        return JobResult(None, height, width)
    except LungcadError as exc:
        return JobResult(str(exc))
    except OSError as exc:
        return JobResult(f"cannot write {job.target}: {exc.strerror or exc}")
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
        return JobResult(f"{type(exc).__name__}: {exc}")


def run_jobs(jobs: list[Job], workers: int, desc: str = "prepare") -> list[JobResult]:
    from tqdm import tqdm

    bar = dict(total=len(jobs), desc=desc, unit="img", file=sys.stderr, disable=None)
    if workers <= 1 or len(jobs) < 2:
        return [convert_one(j) for j in tqdm(jobs, **bar)]
    try:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            return list(tqdm(pool.map(convert_one, jobs, chunksize=4), **bar))
    except BrokenProcessPool as exc:
        raise LungcadError(f"a worker process died ({exc}); out of memory? try fewer --workers") from exc


def check_out_folder(source: Path, out: Path) -> None:
    """Refuse an output folder that is, holds or lies inside the source, or is not empty."""
    src, dst = source.resolve(), out.resolve()
    if dst == src or src in dst.parents or dst in src.parents:
        raise LungcadError(f"--out {out} overlaps the source {source}; choose a separate folder "
                           "(the source is never written to)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise LungcadError(f"--out {out} exists and is not an empty folder; choose a new one")


def _finish(out: Path, table: pd.DataFrame, results: list[JobResult], names: list[str],
            skipped: list[str] | None = None) -> PrepareResult:
    ok = [r.error is None for r in results]
    failed = [(n, r.error) for n, r in zip(names, results) if r.error is not None]
    out.mkdir(parents=True, exist_ok=True)
    table[ok].to_csv(out / LABELS_FILE, index=False)
    return PrepareResult(out, int(sum(ok)), failed, skipped or [])


# --- jsrt ----------------------------------------------------------------------------------


def jsrt_label(state: str) -> str:
    s = re.sub(r"[\s_-]+", "_", str(state).strip().lower())
    if s in ("malignant", "benign"):
        return s
    if s in ("non_nodule", "nonnodule", "normal", "no_nodule"):
        return "non_nodule"
    raise LungcadError(f"unknown JSRT state {state!r} (expected malignant, benign or non-nodule)")


def _number(value: str) -> float:
    v = str(value).strip()
    if v.lower() in ("", "?", "nan", "na", "none"):
        return np.nan
    try:
        return float(v)
    except ValueError:
        raise LungcadError(f"not a number: {value!r}") from None


def _text(value: str) -> str | float:
    v = str(value).strip()
    return v if v and v not in ("?", "nan") else np.nan


def _sex(value: str) -> str | float:
    v = str(value).strip().lower()
    return {"m": "Male", "male": "Male", "f": "Female", "female": "Female"}.get(
        v, v.capitalize() if v and v != "?" else np.nan)


def jsrt_row(record: pd.Series, size: int) -> dict:
    """One labels.csv row from one jsrt_metadata.csv row (strings)."""
    stem = Path(str(record["study_id"]).strip()).stem.upper()
    label = jsrt_label(record["state"])
    nodule = label != "non_nodule"
    x = _number(record["x"]) if nodule else np.nan
    y = _number(record["y"]) if nodule else np.nan
    row = {"path": f"images/{stem}.png", "label": label, "has_nodule": int(nodule),
           "malignant": int(label == "malignant"),
           "subtlety": _number(record["subtlety"]) if nodule else np.nan,
           "size_mm": _number(record["size"]) if nodule else np.nan,
           "age": _number(record["age"]), "sex": _sex(record["gender"]),
           "x_2048": x, "y_2048": y}
    if size != JSRT_MATRIX:  # coordinates follow pixel positions: scale by the matrix ratio
        row[f"x_{size}"] = x * size / JSRT_MATRIX
        row[f"y_{size}"] = y * size / JSRT_MATRIX
    row["position"] = _text(record["position"]) if nodule else np.nan
    row["diagnosis"] = _text(record["diagnosis"])
    row.update({"width": size, "height": size, "spacing_mm": jsrt_mm_per_pixel(size)})
    return row


def prepare_jsrt(source: Path, metadata: Path | None, out: Path, size: int | None,
                 workers: int = 1) -> PrepareResult:
    metadata = metadata or source / "jsrt_metadata.csv"
    if not metadata.is_file():
        raise LungcadError(f"no clinical data at {metadata}; pass --metadata jsrt_metadata.csv "
                           "(the Kaggle JSRT metadata file)")
    check_out_folder(source, out)
    try:
        meta = pd.read_csv(metadata, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise LungcadError(f"cannot read {metadata}: {exc}") from exc
    meta.columns = [c.strip().lower() for c in meta.columns]
    missing = [c for c in JSRT_METADATA_COLUMNS if c not in meta.columns]
    if missing:
        raise LungcadError(f"{metadata} lacks the column(s) {missing}; expected the Kaggle "
                           f"jsrt_metadata.csv columns {','.join(JSRT_METADATA_COLUMNS)}")
    files: dict[str, Path] = {}
    for p in sorted(source.rglob("*")):
        if p.is_file() and p.suffix.lower() == ".img":
            if p.stem.upper() in files:
                raise LungcadError(f"two .IMG files for {p.stem}: {files[p.stem.upper()]} and {p}")
            files[p.stem.upper()] = p
    if not files:
        raise LungcadError(f"no .IMG files in {source}")
    side = size or JSRT_MATRIX
    rows, jobs, names, listed = [], [], [], set()
    failed: list[tuple[str, str]] = []
    for n, record in meta.iterrows():
        study = str(record["study_id"]).strip()
        try:
            row = jsrt_row(record, side)
        except LungcadError as exc:
            failed.append((study or f"row {n + 2}", f"{metadata.name} row {n + 2}: {exc}"))
            continue
        stem = Path(row["path"]).stem
        if stem in listed:
            raise LungcadError(f"{metadata}: study {study} is listed twice")
        listed.add(stem)
        if stem not in files:
            failed.append((study, f"listed in {metadata.name} but no {stem}.IMG in {source}"))
            continue
        rows.append(row)
        names.append(files[stem].name)
        jobs.append(Job(str(files[stem]), str(out / row["path"]), size))
    failed += [(p.name, f"no row for {stem} in {metadata.name}")
               for stem, p in files.items() if stem not in listed]
    result = _finish(out, pd.DataFrame(rows), run_jobs(jobs, workers, "prepare jsrt"), names)
    result.failed = failed + result.failed
    write_jsrt_lesions(out, side)
    return result


def write_jsrt_lesions(out: Path, side: int) -> None:
    """lesions.csv of a prepared JSRT set: one nodule a nodule case, its centre (x_N, y_N) in
    the image's own pixels and its diameter, subtlety kept (the lesion table's JSRT producer)."""
    from lungcad.atomic import atomic_write
    from lungcad.data.lesions import LESIONS_FILE, derive_jsrt_lesions, lesions_csv_text

    table = Manifest.load(out).table
    if not len(table):
        return
    lesions = derive_jsrt_lesions(table, side)
    atomic_write(out / LESIONS_FILE, lesions_csv_text(lesions).encode())


# --- folders -------------------------------------------------------------------------------


def normalise_class_name(folder: str) -> str:
    """'Bengin cases' -> 'benign', 'Malignant cases' -> 'malignant', 'not_normal' -> 'not_normal'."""
    name = folder.strip().lower()
    name = re.sub(r"[\s_-]*cases?$", "", name)
    name = re.sub(r"[^a-z0-9]+", "_", name).strip("_")
    return {"bengin": "benign"}.get(name, name)  # IQ-OTH/NCCD's spelling


def _safe_stem(relative: Path) -> str:
    """'sub/Bengin case (1).jpg' -> 'sub_Bengin_case_1'."""
    stem = "_".join(relative.with_suffix("").parts)
    return re.sub(r"[^A-Za-z0-9.-]+", "_", stem).strip("_") or "image"


def prepare_folders(source: Path, out: Path, size: int | None, workers: int = 1) -> PrepareResult:
    check_out_folder(source, out)
    folders = sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise LungcadError(f"{source} has no class sub-folders (expected e.g. normal/ and not_normal/)")
    by_label: dict[str, list[Path]] = {}
    for folder in folders:
        label = normalise_class_name(folder.name)
        if not label:
            raise LungcadError(f"cannot make a label from the folder name {folder.name!r}")
        by_label.setdefault(label, []).append(folder)
    rows, jobs, names, skipped = [], [], [], []
    for label, label_folders in by_label.items():
        used: Counter = Counter()
        for folder in label_folders:
            for f in sorted(folder.rglob("*")):
                rel = f.relative_to(folder)
                if not f.is_file() or any(part.startswith(".") for part in rel.parts):
                    continue
                name = f"{folder.name}/{rel.as_posix()}"
                if f.suffix.lower() not in FOLDER_IMAGE_SUFFIXES:
                    skipped.append(name)
                    continue
                stem = _safe_stem(rel)
                used[stem.lower()] += 1
                if used[stem.lower()] > 1:  # 'a.jpg' and 'a.png', or 'A b' and 'A_b'
                    stem = f"{stem}_{used[stem.lower()]}"
                path = f"images/{label}/{stem}.png"
                rows.append({"path": path, "label": label, "original_name": name})
                jobs.append(Job(str(f), str(out / path), size))
                names.append(name)
    if not jobs:
        raise LungcadError(f"no image files found under the class folders of {source}")
    results = run_jobs(jobs, workers, "prepare folders")
    table = pd.DataFrame(rows)
    table["width"] = [r.width for r in results]
    table["height"] = [r.height for r in results]
    return _finish(out, table, results, names, skipped)


# --- manifest ------------------------------------------------------------------------------


def prepare_manifest(source: Path, out: Path, size: int | None, workers: int = 1) -> PrepareResult:
    manifest = Manifest.load(source)
    check_out_folder(source, out)
    if size is None:
        raise LungcadError("--format manifest re-sizes a dataset: give --size N")
    table = manifest.table.copy()
    table["path"] = [Path(p).with_suffix(".png").as_posix() for p in manifest.paths]
    clashes = table["path"][table["path"].duplicated()].tolist()
    if clashes:
        raise LungcadError(f"two source images would both become {clashes[0]}; rename one")
    masks = None
    if "mask_path" in table.columns:
        masks = table["mask_path"].where(table["mask_path"].notna(), None).tolist()
        table["mask_path"] = [Path(str(m)).with_suffix(".png").as_posix() if m else m for m in masks]
    jobs = []
    for i, (src, dst) in enumerate(zip(manifest.paths, table["path"])):
        mask_src = masks[i] if masks else None
        jobs.append(Job(str(manifest.image_path(src)), str(out / dst), size,
                        str(manifest.image_path(mask_src)) if mask_src else None,
                        str(out / table["mask_path"].iloc[i]) if mask_src else None))
    results = run_jobs(jobs, workers, "prepare manifest")
    frames = sorted({int(m.group(2)) for c in table.columns if (m := FRAME_COLUMN.match(c))})
    for axis in ("x", "y"):
        have = [f for f in frames if f"{axis}_{f}" in table.columns]
        if have and f"{axis}_{size}" not in table.columns:
            # named frames are square N x N matrices: scale from the finest one
            base = max(have)
            table[f"{axis}_{size}"] = pd.to_numeric(table[f"{axis}_{base}"], errors="coerce") * size / base
    # plain x / y / width / height describe the image at `path`, which is now size x size
    heights = np.array([r.height or np.nan for r in results], dtype=float)
    widths = np.array([r.width or np.nan for r in results], dtype=float)
    if "x" in table.columns:
        table["x"] = pd.to_numeric(table["x"], errors="coerce") * size / widths
    if "y" in table.columns:
        table["y"] = pd.to_numeric(table["y"], errors="coerce") * size / heights
    for column in ("width", "height"):
        if column in table.columns:
            table[column] = size
    return _finish(out, table, results, list(manifest.paths))
