"""A detector over many images: image-level probabilities and the findings table together.

One pass per image gives both: the image probability is the strongest cell of the model's
output map (as the network's own image output), through the model's calibration where it has
one; the marks become rows of a findings table (:data:`lungcad.findings.FINDINGS_COLUMNS`),
which ``lungcad predict`` writes beside its predictions and ``lungcad evaluate --findings``
scores (FROC). The predictions table gains, per image, ``n_marks``, ``top_mark_score`` (the
strongest mark inside the lungs; 0 without marks) and ``malignancy`` (the image-only
malignancy score: the strongest cell of P(nodule) * P(malignant | nodule)).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from lungcad.detection.detect import detect
from lungcad.errors import LungcadError
from lungcad.findings import FINDINGS_COLUMNS

FINDINGS_FILE = "findings.csv"


def image_probabilities(detection, output: str) -> np.ndarray:
    """(rest, positive) of one image from its cell maps: the strongest cell of ``output``
    (``nodule``, or ``malignant`` = P(nodule) * P(malignant | nodule))."""
    p = detection.malignancy if output == "malignant" else detection.nodule_probability
    return np.array([1.0 - p, p])


def findings_rows(key: str, detection, image_shape: tuple[int, int], model: str) -> list[dict]:
    """One row a mark. ``frame_size``: the image's side where it is square (the frame the
    coordinates are in, as lungcad evaluate reads it), else empty."""
    height, width = image_shape
    return [{"path": key, "x": round(f.x, 2), "y": round(f.y, 2),
             "radius_mm": round(f.radius_mm, 2), "score": f.score, "malignancy": f.malignancy,
             "frame_size": width if width == height else np.nan, "model": model}
            for f in detection.findings]


@dataclass
class DetectionLog:
    """What a batch of detections adds to the predictions: the marks, one dict a mark, and per
    image (by its key) the image-level figures. ``label``: the ``model`` column's value;
    ``metadata``: the input's manifest columns (age, sex) by position; ``age``/``sex``: values
    for every image (from the command line), which take precedence."""

    label: str
    metadata: pd.DataFrame | None = None
    age: object = None
    sex: object = None
    marks: list[dict] = field(default_factory=list)
    images: dict[str, dict] = field(default_factory=dict)

    def patient(self, meta, position: int) -> tuple:
        """(age, sex) of one image: given for all, else its DICOM tags, else its manifest row."""
        if self.age is not None or self.sex is not None:
            return self.age, self.sex
        age, sex = getattr(meta, "patient_age", None), getattr(meta, "patient_sex", None)
        if self.metadata is not None and age is None and sex is None:
            row = self.metadata.iloc[position]
            age, sex = row.get("age"), row.get("sex")
        return age, sex

    def add_to(self, table: pd.DataFrame) -> pd.DataFrame:
        """Add the image-level columns to a predictions table (before its ``model`` column,
        rows by ``path``); returns the findings table."""
        if len(table):
            keys = table["path"].tolist()
            names = ["n_marks", "top_mark_score", "malignancy"]
            if any(v["malignancy_age_sex"] is not None for v in self.images.values()):
                names += ["malignancy_age_sex", "age_sex_note"]
            for name in names:
                table.insert(table.columns.get_loc("model"), name,
                             [self.images[k][name] for k in keys])
        return findings_frame(self.marks)


def marks_images(model) -> bool:
    """Whether ``model`` marks nodules here: a detector with cell maps, on the torch runtime or
    exported with them (``lungcad export`` writes a detector's cell maps as a second output)."""
    return bool(getattr(model, "marks_nodules", False))


def detect_arrays(model, arrays: Sequence[np.ndarray], names: Sequence[str], metas: Sequence,
                  positions: Sequence[int], failures: list[tuple[str, str]],
                  log: DetectionLog) -> list[np.ndarray | None]:
    """Probabilities per image (None where it failed: added to ``failures``); the marks and the
    image-level figures go to ``log``. ``metas``: each image's ImageMeta (spacing, modality,
    patient); ``positions``: each image's row in the input."""
    output = model.map_output
    out: list[np.ndarray | None] = []
    for array, name, meta, position in zip(arrays, names, metas, positions):
        age, sex = log.patient(meta, position)
        try:
            detection = detect(model, array, meta.pixel_spacing_mm, meta.modality, age=age,
                               sex=sex)
        except LungcadError as exc:
            failures.append((name, str(exc)))
            out.append(None)
            continue
        probs = image_probabilities(detection, output)[None]
        calibrate = getattr(model, "calibrate", None)
        out.append((calibrate(probs) if calibrate else probs)[0])
        log.marks += findings_rows(name, detection, array.shape, log.label)
        log.images[name] = {
            "n_marks": len(detection.findings),
            "top_mark_score": detection.findings[0].score if detection.findings else 0.0,
            "malignancy": detection.malignancy,
            "malignancy_age_sex": detection.malignancy_age_sex,
            "age_sex_note": detection.age_sex_note}
    return out


def findings_frame(rows: Sequence[dict]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=list(FINDINGS_COLUMNS))


def findings_path_for(predictions: str | Path) -> Path:
    """Where the findings go beside a predictions file: ``findings.csv`` in its folder for
    ``predictions.csv``, else ``<stem>_findings.csv``."""
    predictions = Path(predictions)
    if predictions.name == "predictions.csv":
        return predictions.with_name(FINDINGS_FILE)
    return predictions.with_name(f"{predictions.stem}_findings.csv")


def write_findings(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a findings table (through a temporary file; formula-like text neutralised)."""
    from lungcad.atomic import atomic_write
    from lungcad.csvsafe import neutralise_formulas

    path = Path(path)
    try:
        return atomic_write(path, neutralise_formulas(table.copy()).to_csv(
            index=False, lineterminator="\n").encode())
    except OSError as exc:
        raise LungcadError(f"cannot write {path}: {exc.strerror or exc}") from None
