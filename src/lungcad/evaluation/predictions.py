"""Predictions files: read, validate, and turn into arrays the metrics use.

A predictions file (written by ``lungcad predict``, by training runs as ``val_predictions.csv``
and by ``lungcad experiment``) is a CSV with columns

- ``path``; ``true_label`` (absent for unlabelled input);
- ``prob_<class>`` for every class, in class order (binary: negative first, positive last);
- ``predicted_label``; ``model``; optional ``fold``;
- any metadata passed through from the manifest (JSRT: subtlety, size_mm, age, sex, ...).

A training run's ``val_predictions.csv`` has only ``path``, ``true_label`` and the ``prob_``
columns: enough to choose a threshold on, which is all validation predictions are used for.
Read such a file with ``require_decisions=False``.

Text cells that a spreadsheet would run as a formula are written with a leading ``'``
(:mod:`lungcad.csvsafe`); :func:`read_predictions` takes it off, so ``path`` matches labels.csv.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lungcad.csvsafe import restore_formulas
from lungcad.errors import LungcadError, first_line

PROB_PREFIX = "prob_"
REQUIRED_COLUMNS = ("path", "predicted_label", "model")
DECISION_COLUMNS = ("predicted_label", "model")  # not needed to choose a threshold
LABEL_COLUMNS = ("path", "true_label", "predicted_label", "model")
ROW_SUM_TOLERANCE = 1e-3  # files round probabilities; a row off by more is not a distribution


@dataclass(frozen=True)
class Predictions:
    """A validated predictions table as arrays. ``y`` is None for unlabelled input."""

    frame: pd.DataFrame
    source: str
    classes: tuple[str, ...]
    probs: np.ndarray  # (n, K) float64, rows sum to ~1
    y: np.ndarray | None  # (n,) class index of true_label
    predicted: np.ndarray  # (n,) class index of predicted_label (argmax if the file has none)

    @property
    def binary(self) -> bool:
        return len(self.classes) == 2

    @property
    def positive_scores(self) -> np.ndarray:
        """Probability of the positive (last) class; binary only."""
        return self.probs[:, -1]

    def __len__(self) -> int:
        return len(self.frame)


def source_name(frame: pd.DataFrame, default: str = "predictions") -> str:
    return str(frame.attrs.get("source", default))


def read_predictions(path: str | Path, require_decisions: bool = True) -> pd.DataFrame:
    """Read a predictions CSV and validate it; the frame's ``attrs`` hold its source and sha256.

    ``require_decisions=False`` accepts a file without ``predicted_label``/``model`` (a training
    run's ``val_predictions.csv``), as validation predictions to choose a threshold on.
    Raises :class:`LungcadError` naming the file (and row) for anything wrong with it.
    """
    path = Path(path)
    if not path.is_file():
        raise LungcadError(f"predictions file {path} does not exist (write one with lungcad predict)")
    raw = path.read_bytes()
    try:
        frame = pd.read_csv(path, dtype={c: str for c in LABEL_COLUMNS})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise LungcadError(f"predictions file {path} is not a readable CSV ({first_line(exc)})") from None
    frame = restore_formulas(frame)  # what lungcad's writers neutralised for spreadsheets
    frame.attrs["source"] = str(path)
    frame.attrs["sha256"] = hashlib.sha256(raw).hexdigest()
    validate_predictions(frame, require_decisions=require_decisions)
    return frame


def class_names(frame: pd.DataFrame) -> tuple[str, ...]:
    return tuple(c[len(PROB_PREFIX):] for c in frame.columns if str(c).startswith(PROB_PREFIX))


def _row_label(frame: pd.DataFrame, position: int) -> str:
    """'row 3 (path images/x.png)': 1-based data row, as a person counts rows below the header."""
    path_value = frame["path"].iloc[position] if "path" in frame.columns else None
    where = f"row {position + 1}"
    return f"{where} (path {path_value})" if isinstance(path_value, str) else where


def validate_predictions(frame: pd.DataFrame, require_labels: bool = False,
                         require_decisions: bool = True) -> Predictions:
    """Check a predictions table and return it as arrays; raise :class:`LungcadError` if bad.

    ``require_decisions=False``: ``predicted_label`` and ``model`` may be absent (validation
    predictions only choose a threshold); ``predicted`` is then the most probable class.
    """
    source = source_name(frame)
    if len(frame) == 0:
        raise LungcadError(f"{source}: the predictions file has no rows")
    required = REQUIRED_COLUMNS if require_decisions else tuple(
        c for c in REQUIRED_COLUMNS if c not in DECISION_COLUMNS)
    missing = [c for c in required if c not in frame.columns]
    classes = class_names(frame)
    if missing:
        needs = ("path, prob_<class> for every class, predicted_label and model (write it with "
                 "lungcad predict)" if require_decisions else
                 "path, true_label and prob_<class> for every class")
        raise LungcadError(f"{source}: missing column(s) {missing}; a predictions file needs {needs}")
    if len(classes) < 2:
        raise LungcadError(
            f"{source}: found {len(classes)} prob_<class> column(s); a predictions file needs one "
            "per class, at least two"
        )
    if len(set(classes)) != len(classes):
        raise LungcadError(f"{source}: duplicate probability columns {list(classes)}")
    if require_labels and "true_label" not in frame.columns:
        raise LungcadError(
            f"{source}: has no true_label column, so there is nothing to score against; "
            "evaluate needs predictions for labelled images"
        )

    prob_columns = [PROB_PREFIX + c for c in classes]
    probs = frame[prob_columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    bad_cell = ~np.isfinite(probs) | (probs < 0) | (probs > 1)
    if bad_cell.any():
        row, col = np.argwhere(bad_cell)[0]
        cell = frame[prob_columns[col]].iloc[row]
        # repr quotes text ('high'); str keeps numbers readable (1.5, not np.float64(1.5))
        shown = repr(cell) if isinstance(cell, str) else str(cell)
        raise LungcadError(
            f"{source} {_row_label(frame, row)}: {prob_columns[col]}={shown} is not a "
            "probability in [0, 1]"
        )
    sums = probs.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1) > ROW_SUM_TOLERANCE)
    if off.size:
        row = off[0]
        raise LungcadError(
            f"{source} {_row_label(frame, row)}: the probabilities sum to {sums[row]:.4f}, not 1 "
            f"({off.size} such row(s)); the prob_ columns must hold one distribution per row"
        )

    if "predicted_label" in frame.columns:
        predicted = _label_indices(frame, "predicted_label", classes, source)
    else:  # only allowed without require_decisions; nothing scores these
        predicted = probs.argmax(axis=1)
    y = _label_indices(frame, "true_label", classes, source) if "true_label" in frame.columns else None
    return Predictions(frame=frame, source=source, classes=classes, probs=probs, y=y,
                       predicted=predicted)


def _label_indices(frame: pd.DataFrame, column: str, classes: tuple[str, ...], source: str) -> np.ndarray:
    values = frame[column]
    blank = values.isna() | (values.astype(str).str.strip() == "")
    if blank.any():
        row = int(np.flatnonzero(blank.to_numpy())[0])
        raise LungcadError(f"{source} {_row_label(frame, row)}: {column} is empty")
    index = {c: i for i, c in enumerate(classes)}
    mapped = values.astype(str).str.strip().map(index)
    unknown = mapped.isna().to_numpy()
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        raise LungcadError(
            f"{source} {_row_label(frame, row)}: {column} {values.iloc[row]!r} is not one of the "
            f"classes of the prob_ columns {list(classes)}"
        )
    return mapped.to_numpy(dtype=int)


def select_model(frame: pd.DataFrame, model: str) -> pd.DataFrame:
    """The rows of one model (the ``model`` column), keeping the frame's source and sha256."""
    source = source_name(frame)
    if "model" not in frame.columns:
        raise LungcadError(f"{source}: has no model column to select {model!r} from")
    names = frame["model"].astype(str)
    chosen = frame[names == model].reset_index(drop=True)
    if chosen.empty:
        raise LungcadError(f"{source}: no rows of model {model!r}; models in the file: "
                           f"{', '.join(sorted(names.unique()))}")
    chosen.attrs.update(frame.attrs)
    chosen.attrs["source"] = f"{source} (model {model})"
    return chosen
