"""The library side of ``lungcad predict``: find the images, predict them in batches, write rows.

(One image at a time, in memory: :func:`lungcad.domain.check.predict_image`. Loading a model,
either runtime: :func:`lungcad.inference.load_model`.)

A predictions table (see :mod:`lungcad.evaluation.predictions`) has one row per image:

- ``path``: the manifest's ``path`` for dataset input (so it joins with labels.csv and split
  files), otherwise the file's path as given;
- ``true_label`` (labelled input only): the dataset's label mapped through the model's task;
- ``prob_<class>`` for every class, in the model's class order;
- ``predicted_label`` at the model's decision threshold (``LungModel.decide``);
- ``model`` (``name@version``); ``fold`` when a split file chose the images;
- the manifest's metadata columns (subtlety, size_mm, sex, x_512, ...), and its own label as
  ``dataset_label``, so that evaluation can make subgroup tables and localisation scores.

Input is image files, folders (searched recursively) or one dataset folder (has labels.csv).
An image that cannot be read or used is reported and the others go on.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import pandas as pd

from lungcad.atomic import atomic_write
from lungcad.errors import LungcadError
from lungcad.image_files import entry_kind, images_in_folder

if TYPE_CHECKING:  # pragma: no cover
    from lungcad.data.manifest import Manifest
    from lungcad.data.tasks import Task

PROGRESS_MIN_IMAGES = 64
# Columns the predictions table writes itself; a manifest column of the same name is not copied.
_OWN_COLUMNS = ("path", "true_label", "predicted_label", "model", "fold", "dataset_label")


@dataclass
class PredictionInput:
    """The images to predict, in output order, with what is known about each."""

    files: list[Path]                       # where each image is read from
    keys: list[str]                         # its ``path`` value in the output
    true_labels: list[str] | None = None    # task classes, for labelled (dataset) input
    metadata: pd.DataFrame | None = None    # manifest columns, aligned with ``files``
    fold: int | None = None                 # the split fold the images came from
    notes: list[str] = field(default_factory=list)  # what was left out, and why
    # (path, reason) of entries that could not be used: unreadable, broken link, FIFO...
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.files)


@dataclass
class BatchPredictions:
    """What :func:`predict_input` gives: the predictions table and the images that failed."""

    table: pd.DataFrame                              # one row per image predicted
    failures: list[tuple[str, str]]                  # (path, message) of images that failed
    probabilities: np.ndarray                        # (rows, classes), the table's prob_ columns
    findings: pd.DataFrame | None = None             # a detector's marks, one row a mark
    checks: list = field(default_factory=list)       # each row's domain check (Screen or None)

    def prediction(self, model, row: int):
        """Row ``row``'s :class:`~lungcad.lung_model.ImagePrediction` (its verdict, domain
        note included), from the probabilities and the domain check themselves."""
        return model.prediction(self.probabilities[row], self.checks[row])


# ---------------------------------------------------------------------------------------------
# models

def model_label(model) -> str:
    """``name@version``, the ``model`` column's value."""
    return f"{model.spec.name}@{model.spec.version}"


def model_task(model) -> "Task":
    from lungcad.data.tasks import get_task

    task = get_task(model.spec.task)
    if tuple(task.classes) != tuple(model.classes):
        raise LungcadError(f"the model's classes {list(model.classes)} differ from those of its "
                           f"task {task.name} {list(task.classes)}; the model directory is damaged")
    return task


# ---------------------------------------------------------------------------------------------
# inputs

def is_dataset_folder(path: Path) -> bool:
    from lungcad.data.manifest import LABELS_FILE

    return os.path.isdir(path) and os.path.isfile(path / LABELS_FILE)  # False where unreadable


def file_input(inputs: Sequence[str | Path]) -> PredictionInput:
    """Image files and folders (no dataset folder) to predict, duplicates removed. Entries that
    cannot be used (see :func:`images_in_folder`) are left out and listed in ``skipped``."""
    files: list[Path] = []
    notes: list[str] = []
    problems: list[tuple[Path, str]] = []
    for raw in inputs:
        path = Path(raw)
        kind, reason = entry_kind(path)
        if kind in ("folder", "link-folder"):  # a link given by name is followed
            found, skipped = images_in_folder(path, problems)
            if skipped:
                shown = ", ".join(str(p.relative_to(path)) for p in skipped[:3])
                notes.append(f"{path}: skipped {len(skipped)} file(s) that are not images "
                             f"({shown}{', ...' if len(skipped) > 3 else ''})")
            if not found:
                notes.append(f"{path}: no image files found in this folder")
            files += found
        elif kind == "file":
            files.append(path)
        elif not os.path.lexists(path):
            raise LungcadError(f"input not found: {path}")
        else:
            problems.append((path, reason))
    seen: set[Path] = set()
    unique = []
    for path in files:
        resolved = path.resolve()
        if resolved not in seen:
            seen.add(resolved)
            unique.append(path)
    if len(unique) < len(files):
        notes.append(f"{len(files) - len(unique)} image(s) named more than once are predicted once")
    return PredictionInput(files=unique, keys=[str(p) for p in unique], notes=notes,
                           skipped=[(str(p), reason) for p, reason in problems])


def dataset_input(manifest: "Manifest", task: "Task", paths: Sequence[str] | None = None,
                  fold: int | None = None) -> PredictionInput:
    """The images of a dataset (or those ``paths`` of it), labelled through ``task``.

    Rows whose label has no class in the task are left out, with a note.
    """
    rows = manifest.table if paths is None else manifest.rows_for(list(paths))
    mapped = task.map_labels(rows["label"])
    keep = mapped.notna().to_numpy()
    notes = []
    if not keep.all():
        dropped = sorted(set(rows.loc[~keep, "label"].astype(str)))
        notes.append(f"left out {int((~keep).sum())} image(s) whose label ({', '.join(dropped)}) "
                     f"has no class in task {task.name}")
    rows = rows[keep].reset_index(drop=True)
    metadata = rows.drop(columns=["path"]).rename(columns={"label": "dataset_label"})
    clashing = [c for c in metadata.columns
                if c != "dataset_label" and (c in _OWN_COLUMNS or str(c).startswith("prob_"))]
    if clashing:
        notes.append(f"manifest column(s) {clashing} not copied: predictions write their own")
        metadata = metadata.drop(columns=clashing)
    return PredictionInput(files=[manifest.image_path(p) for p in rows["path"]],
                           keys=rows["path"].tolist(), true_labels=mapped[keep].tolist(),
                           metadata=metadata, fold=fold, notes=notes)


def split_paths(manifest: "Manifest", split_path: Path, task: "Task", part: str,
                fold: int | None) -> tuple[list[str], int]:
    """The manifest paths of one part of one fold, as the split file lists them, after
    :func:`lungcad.data.splits.load_fold` has checked the split against the dataset."""
    from lungcad.data.splits import PARTS, load_fold, load_split

    if part not in PARTS:
        raise LungcadError(f"--part must be one of {', '.join(PARTS)}, not {part!r}")
    if fold is None:
        n_folds = load_split(split_path).n_folds
        if n_folds > 1:
            raise LungcadError(f"{split_path} has {n_folds} folds: pass --fold K "
                               f"(0 to {n_folds - 1}) to say which fold's {part} part")
        fold = 0
    return load_fold(manifest, split_path, task, fold).raw_part(part), fold


def collect_input(inputs: Sequence[str | Path], task: "Task", *, split_path: Path | None = None,
                  part: str = "test", fold: int | None = None) -> PredictionInput:
    """What ``lungcad predict`` was given, as a :class:`PredictionInput`."""
    from lungcad.data.manifest import Manifest

    if not inputs:
        raise LungcadError("give at least one image file, folder or dataset folder to predict")
    datasets = [Path(p) for p in inputs if is_dataset_folder(Path(p))]
    if datasets:
        if len(inputs) > 1:
            raise LungcadError(f"{datasets[0]} is a dataset folder (it has labels.csv): give it "
                               "alone, not together with other inputs")
        manifest = Manifest.load(datasets[0])
        if split_path is None:
            return dataset_input(manifest, task)
        paths, fold = split_paths(manifest, split_path, task, part, fold)
        return dataset_input(manifest, task, paths, fold)
    if split_path is not None:
        raise LungcadError("--split needs a dataset folder (one with labels.csv) as the input")
    return file_input(inputs)


# ---------------------------------------------------------------------------------------------
# prediction

def _read_images(files: Sequence[Path], keys: Sequence[str], failures: list[tuple[str, str]],
                 frame: int | None = None, modalities: dict[int, str] | None = None,
                 metas: dict | None = None) -> list[tuple[int, np.ndarray]]:
    from lungcad.io import load_image

    options = {} if frame is None else {"frame": frame}
    loaded = []
    for i, (path, key) in enumerate(zip(files, keys)):
        try:
            image = load_image(path, **options)
            loaded.append((i, image.array))
            if modalities is not None:
                modalities[i] = image.meta.modality
            if metas is not None:
                metas[i] = image.meta
        except LungcadError as exc:
            failures.append((key, str(exc)))
        except OSError as exc:  # e.g. access lost since the folder was searched
            failures.append((key, f"{path}: could not be read ({exc.strerror or exc})"))
    return loaded


def _predict_chunk(model, arrays: list[np.ndarray], names: list[str], batch_size: int,
                   failures: list[tuple[str, str]]) -> list[np.ndarray | None]:
    """Probabilities per image; a whole batch is tried first, then one by one if it fails, so
    that one bad image (blank, too small, wrongly scaled) costs only its own row."""
    try:
        return list(model.predict_proba(arrays, batch_size=batch_size, sources=names))
    except LungcadError:
        pass
    out: list[np.ndarray | None] = []
    for array, name in zip(arrays, names):
        try:
            out.append(model.predict_proba([array], batch_size=1, sources=[name])[0])
        except LungcadError as exc:
            failures.append((name, str(exc)))
            out.append(None)
    return out


def predict_input(model, inp: PredictionInput, batch_size: int = 16,
                  progress: bool | None = None,
                  on_failure: Callable[[str, str], None] | None = None,
                  frame: int | None = None, age=None, sex=None) -> BatchPredictions:
    """Predict every image of ``inp`` in batches; failures are collected (and passed to
    ``on_failure`` as they happen), never raised.

    ``progress``: a tqdm bar on stderr; None shows one for many images on a terminal.
    ``frame``: which frame of multi-frame files (DICOM, TIFF) to predict.
    ``age``, ``sex``: for a detector's malignancy with age and sex, every image's (else each
    DICOM's PatientAge/PatientSex, else the dataset's age/sex columns).
    """
    from tqdm.auto import tqdm

    from lungcad.domain.check import add_check_columns, screen_loaded

    if batch_size < 1:
        raise LungcadError(f"--batch-size must be at least 1, not {batch_size}")
    classes = list(model.classes)
    failures: list[tuple[str, str]] = []
    kept: list[int] = []
    from lungcad.detection.batch import DetectionLog, marks_images

    marks = (DetectionLog(model_label(model), inp.metadata, age, sex) if marks_images(model)
             else None)
    checks: dict = {}  # position -> domain check (lungcad.domain.check.Screen)
    probs: list[np.ndarray] = []
    disable = (not progress) if progress is not None else (len(inp) < PROGRESS_MIN_IMAGES or None)
    with tqdm(total=len(inp), unit="image", disable=disable, file=sys.stderr,
              desc="predicting") as bar:
        for start in range(0, len(inp), batch_size):
            stop = min(start + batch_size, len(inp))
            before = len(failures)
            modalities: dict[int, str] = {}
            metas: dict = {}
            loaded = _read_images(inp.files[start:stop], inp.keys[start:stop], failures, frame,
                                  modalities, metas)
            loaded = screen_loaded(model, loaded, [inp.keys[start + i] for i, _ in loaded],
                               [modalities.get(i) for i, _ in loaded], start, failures, checks)
            names = [inp.keys[start + i] for i, _ in loaded]
            if marks is not None:  # a detector: probabilities and marks from one pass
                from lungcad.detection.batch import detect_arrays

                chunk = detect_arrays(model, [a for _, a in loaded], names,
                                      [metas[i] for i, _ in loaded],
                                      [start + i for i, _ in loaded], failures, marks)
            else:
                chunk = _predict_chunk(model, [a for _, a in loaded], names, batch_size,
                                       failures)
            for (i, _), p in zip(loaded, chunk):
                if p is not None:
                    kept.append(start + i)
                    probs.append(np.asarray(p, dtype=np.float64))
            if on_failure is not None:
                for key, message in failures[before:]:
                    on_failure(key, message)
            bar.update(stop - start)
    matrix = np.stack(probs) if probs else np.zeros((0, len(classes)))
    table = prediction_table(model, inp, kept, matrix)
    add_check_columns(model, table, [checks[i] for i in kept])
    findings = None if marks is None else marks.add_to(table)
    return BatchPredictions(table, failures, matrix, findings, [checks.get(i) for i in kept])


def prediction_table(model, inp: PredictionInput, rows: Sequence[int],
                     probs: np.ndarray) -> pd.DataFrame:
    """The predictions table for the images at positions ``rows`` of ``inp``."""
    rows = list(rows)
    table = pd.DataFrame({"path": [inp.keys[i] for i in rows]})
    if inp.true_labels is not None:
        table["true_label"] = [inp.true_labels[i] for i in rows]
    for k, name in enumerate(model.classes):
        table[f"prob_{name}"] = probs[:, k] if len(rows) else []
    table["predicted_label"] = model.decide(probs) if len(rows) else []
    table["model"] = model_label(model)
    if inp.fold is not None:
        table["fold"] = inp.fold
    if inp.metadata is not None:
        meta = inp.metadata.iloc[rows].reset_index(drop=True)
        table = pd.concat([table, meta], axis=1)
    return table


def write_predictions(table: pd.DataFrame, path: str | Path) -> Path:
    """Write the table as CSV through a temporary file and a rename (never half a file).
    Probabilities (and every other float) are written with the shortest digits that read back
    to the same value, never rounded: each label was decided on the unrounded probability, so
    that re-applying the model's threshold to the file's values gives the file's labels.
    Metadata columns are written as they are, except that text a spreadsheet would run as a
    formula (a file named ``=...``) gets a leading ``'`` (:mod:`lungcad.csvsafe`;
    :func:`lungcad.evaluation.predictions.read_predictions` takes it off again, so ``path``
    stays a key)."""
    from lungcad.csvsafe import neutralise_formulas

    path = Path(path)
    table = neutralise_formulas(table.copy())
    try:
        return atomic_write(path, table.to_csv(index=False, lineterminator="\n").encode())
    except OSError as exc:
        reason = output_problem(path, "--out") or (exc.strerror or str(exc))
        raise LungcadError(f"cannot write {path}: {reason}") from None


def output_problem(path: str | Path, option: str = "--out", *, folder: bool = False) -> str | None:
    """Why ``path`` (a file, or a folder with ``folder=True``) cannot be written, or None:
    checked before any work, so that a long run does not end in a write error."""
    path = Path(path)
    if not folder and os.path.isdir(path):
        return (f"{path} is a folder; give {option} a file name such as "
                f"{path / 'predictions.csv'}")
    if folder and os.path.lexists(path) and not os.path.isdir(path):
        return f"{path} is a file, not a folder"
    existing = path if folder else path.parent
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not os.path.isdir(existing):
        return f"{existing} is a file, not a folder"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        return f"{existing} is not writable ({exc.strerror or exc})"
    return None


def check_output(path: str | Path, option: str = "--out", *, folder: bool = False) -> None:
    """Raise :class:`LungcadError` if :func:`output_problem` finds one."""
    problem = output_problem(path, option, folder=folder)
    if problem is not None:
        raise LungcadError(f"cannot write {option} {path}: {problem}")
