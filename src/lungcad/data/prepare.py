"""`lungcad data prepare`: convert sources into the one dataset format (images + labels.csv).

Formats: ``jsrt`` (raw .IMG files + the Kaggle ``jsrt_metadata.csv``), ``folders`` (one
sub-folder per class), ``manifest`` (re-size an existing dataset). Images are written as PNG,
16-bit where the source has more than 8 bits, resized with area interpolation. Work runs in
parallel; a file that fails is reported by name and the rest go on.
"""

from __future__ import annotations

import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lungcad.data.manifest import LABELS_FILE, Manifest
from lungcad.errors import LungcadError
from lungcad.prediction import IMAGE_EXTENSIONS
from lungcad.preprocess import resize_area

JSRT_MATRIX = 2048
JSRT_METADATA_COLUMNS = ("study_id", "subtlety", "size", "age", "gender", "x", "y", "state",
                         "position", "diagnosis")
COORD_COLUMN = re.compile(r"^([xy])_(\d+)$")


@dataclass
class PrepareResult:
    out: Path
    written: int
    failed: list[tuple[str, str]] = field(default_factory=list)


def _convert_one(job: tuple[str, str, int | None, bool]) -> str | None:
    """Read, resize and write one image; returns an error message or None."""
    from PIL import Image

    from lungcad.io import load_image

    src, dst, size, is_mask = job
    try:
        loaded = load_image(src)
        array = loaded.array if size is None else resize_area(loaded.array, size)
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        if is_mask:
            Image.fromarray(np.where(array >= 0.5, 255, 0).astype(np.uint8)).save(dst)
        elif loaded.meta.bit_depth > 8:
            Image.fromarray(np.round(np.clip(array, 0, 1) * 65535).astype(np.uint16)).save(dst)
        else:
            Image.fromarray(np.round(np.clip(array, 0, 1) * 255).astype(np.uint8)).save(dst)
        return None
    except LungcadError as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot write {dst}: {exc}"


def _run_jobs(jobs: list[tuple[str, str, int | None, bool]], workers: int) -> list[str | None]:
    from tqdm import tqdm

    if workers <= 1:
        return [_convert_one(j) for j in tqdm(jobs, desc="prepare", unit="img")]
    with ProcessPoolExecutor(workers) as pool:
        return list(tqdm(pool.map(_convert_one, jobs, chunksize=4), total=len(jobs), desc="prepare",
                         unit="img"))


def _check_out(source: Path, out: Path) -> None:
    if out.resolve() == source.resolve():
        raise LungcadError("--out must differ from the source folder (the source is never overwritten)")
    if (out / LABELS_FILE).exists():
        raise LungcadError(f"{out} already holds a dataset; choose an empty --out folder")


def _finish(out: Path, table: pd.DataFrame, errors: list[str | None], names: list[str]) -> PrepareResult:
    failed = [(n, e) for n, e in zip(names, errors) if e]
    ok = [e is None for e in errors]
    out.mkdir(parents=True, exist_ok=True)
    table[ok].to_csv(out / LABELS_FILE, index=False)
    return PrepareResult(out, int(sum(ok)), failed)


def _jsrt_label(state: str) -> str:
    s = str(state).strip().lower().replace("-", "_").replace(" ", "_")
    if s in ("malignant", "benign"):
        return s
    if s in ("non_nodule", "nonnodule", "nan", "normal", ""):
        return "non_nodule"
    raise LungcadError(f"unknown JSRT state {state!r} (expected malignant, benign or non-nodule)")


def prepare_jsrt(source: Path, metadata: Path | None, out: Path, size: int | None,
                 workers: int = 2) -> PrepareResult:
    metadata = metadata or source / "jsrt_metadata.csv"
    if not metadata.is_file():
        raise LungcadError(f"no clinical data at {metadata}; pass --metadata jsrt_metadata.csv")
    _check_out(source, out)
    meta = pd.read_csv(metadata, dtype=str, keep_default_na=False)
    missing = [c for c in JSRT_METADATA_COLUMNS if c not in meta.columns]
    if missing:
        raise LungcadError(f"{metadata} lacks the column(s) {missing}; expected the Kaggle "
                           f"jsrt_metadata.csv columns {','.join(JSRT_METADATA_COLUMNS)}")
    files = {p.stem.upper(): p for p in source.iterdir() if p.suffix.lower() == ".img"}
    if not files:
        raise LungcadError(f"no .IMG files in {source}")
    side = size or JSRT_MATRIX
    rows, jobs, names = [], [], []

    def number(v: str) -> float:
        v = v.strip()
        return float(v) if v not in ("", "?", "nan", "NaN") else np.nan

    for _, r in meta.iterrows():
        stem = Path(r["study_id"].strip()).stem.upper()
        label = _jsrt_label(r["state"])
        x, y = number(r["x"]), number(r["y"])
        row = {"path": f"images/{stem}.png", "label": label,
               "has_nodule": int(label != "non_nodule"), "malignant": int(label == "malignant"),
               "subtlety": number(r["subtlety"]), "size_mm": number(r["size"]),
               "age": number(r["age"]), "sex": r["gender"].strip().capitalize() or np.nan,
               "x_2048": x, "y_2048": y, f"x_{side}": x * side / JSRT_MATRIX,
               f"y_{side}": y * side / JSRT_MATRIX, "position": r["position"] or np.nan,
               "diagnosis": r["diagnosis"] or np.nan}
        if stem not in files:
            names.append(stem)
            rows.append(row)
            jobs.append(None)
            continue
        rows.append(row)
        names.append(files[stem].name)
        jobs.append((str(files[stem]), str(out / row["path"]), size, False))
    errors: list[str | None] = [None] * len(jobs)
    real = [j for j in jobs if j is not None]
    results = iter(_run_jobs(real, workers))
    for i, j in enumerate(jobs):
        errors[i] = next(results) if j is not None else "listed in the metadata but no .IMG file found"
    table = pd.DataFrame(rows)
    if side == JSRT_MATRIX:  # x_2048 is already the output frame
        table = table.loc[:, ~table.columns.duplicated()]
    return _finish(out, table, errors, names)


def normalise_class_name(folder: str) -> str:
    """'Bengin cases' -> 'benign', 'Malignant cases' -> 'malignant', 'not_normal' -> 'not_normal'."""
    name = folder.strip().lower()
    name = re.sub(r"[\s_-]*cases?$", "", name)
    name = {"bengin": "benign"}.get(name, name)
    return re.sub(r"[^a-z0-9]+", "_", name).strip("_")


def prepare_folders(source: Path, out: Path, size: int | None, workers: int = 2) -> PrepareResult:
    _check_out(source, out)
    classes = sorted(p for p in source.iterdir() if p.is_dir())
    if not classes:
        raise LungcadError(f"{source} has no class sub-folders (expected e.g. normal/ and not_normal/)")
    rows, jobs, names = [], [], []
    for folder in classes:
        label = normalise_class_name(folder.name)
        for f in sorted(folder.rglob("*")):
            if not f.is_file() or f.name.startswith("."):
                continue
            if f.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            rel = f"images/{label}/{f.relative_to(folder).with_suffix('.png').as_posix().replace('/', '_')}"
            rows.append({"path": rel, "label": label, "source": f"{folder.name}/{f.relative_to(folder)}"})
            jobs.append((str(f), str(out / rel), size, False))
            names.append(f"{folder.name}/{f.relative_to(folder)}")
    if not jobs:
        raise LungcadError(f"no images found under {source}")
    return _finish(out, pd.DataFrame(rows), _run_jobs(jobs, workers), names)


def prepare_manifest(source: Path, out: Path, size: int | None, workers: int = 2) -> PrepareResult:
    manifest = Manifest.load(source)
    _check_out(source, out)
    if size is None:
        raise LungcadError("--format manifest re-sizes a dataset: give --size N")
    table = manifest.table.copy()
    table["path"] = [str(Path(p).with_suffix(".png")) for p in table["path"]]
    jobs = [(str(manifest.image_path(src)), str(out / dst), size, False)
            for src, dst in zip(manifest.paths, table["path"])]
    names = list(manifest.paths)
    if "mask_path" in table.columns:
        masks = table["mask_path"].fillna("").astype(str)
        table["mask_path"] = [str(Path(m).with_suffix(".png")) if m else "" for m in masks]
        jobs_masks = [(str(source / m), str(out / d), size, True)
                      for m, d in zip(masks, table["mask_path"]) if m]
    else:
        jobs_masks = []
    frames = {int(m.group(2)) for c in table.columns if (m := COORD_COLUMN.match(c))}
    if frames and size not in frames:
        base = max(frames)
        table[f"x_{size}"] = table[f"x_{base}"] * size / base
        table[f"y_{size}"] = table[f"y_{base}"] * size / base
    errors = _run_jobs(jobs + jobs_masks, workers)
    image_errors = errors[:len(jobs)]
    for (src, _, _, _), e in zip(jobs_masks, errors[len(jobs):]):
        if e:
            image_errors.append(f"mask: {e}")
            names.append(src)
    result = _finish(out, table, image_errors[:len(jobs)], names[:len(jobs)])
    result.failed += [(n, e) for n, e in zip(names[len(jobs):], image_errors[len(jobs):])]
    return result
