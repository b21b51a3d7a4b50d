"""Scores on a model's own training images are not a validation: say so in the report.

``lungcad predict`` writes ``in_training_data`` (True where the image was one of the model's
training images, from the model directory's record: :mod:`lungcad.domain.training_data`).
:func:`mark_in_sample` puts a warning at the head of an evaluation report whose predictions hold
such images, with the count, and records ``in_training_data`` in report.json
(``"validation": false``), so that an in-sample score is never read as a validation.
"""

from __future__ import annotations

import pandas as pd

COLUMN = "in_training_data"


def in_training_mask(table: pd.DataFrame) -> pd.Series | None:
    """Per row, whether the image was in the model's training data; None where the table has
    no such column (predictions of a model that records nothing, or older files)."""
    if COLUMN not in table.columns:
        return None
    values = table[COLUMN].astype(str).str.strip().str.lower()
    return values.isin(("true", "1", "yes"))


def in_sample_text(n_in: int, n: int) -> str:
    return (f"NOT A VALIDATION: {n_in} of {n} images were in the model's training data; "
            "these scores are in-sample and say nothing about images the model has not seen. "
            "Score held-out images (e.g. the out-of-fold predictions of lungcad experiment)")


def mark_in_sample(report: dict, table: pd.DataFrame) -> str | None:
    """Add the in-sample warning and summary to ``report`` where ``table``'s images include
    training images; return the warning (None where there is none)."""
    mask = in_training_mask(table)
    if mask is None:
        return None
    n_in, n = int(mask.sum()), int(len(mask))
    report["in_training_data"] = {"n_images": n, "n_in_training_data": n_in,
                                  "validation": n_in == 0}
    if not n_in:
        return None
    text = in_sample_text(n_in, n)
    report["warnings"] = [text] + list(report.get("warnings", []))
    return text


def training_images_note(table: pd.DataFrame) -> str | None:
    """A line for ``lungcad predict`` where some predicted images were training images."""
    mask = in_training_mask(table)
    if mask is None or not mask.any():
        return None
    return (f"{int(mask.sum())} of {len(mask)} images were in the model's training data "
            f"({COLUMN} True): scores on them are in-sample, not a validation")
