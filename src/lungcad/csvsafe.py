"""Spreadsheet-safe CSV cells: no text cell a user opens in a spreadsheet runs as a formula.

A file named ``=HYPERLINK(...).png`` would otherwise reach predictions.csv as a formula (CSV or
formula injection). Following OWASP, a text cell (or column name) that starts with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return is written with a single quote ``'`` in front,
which spreadsheets show as text. Numbers are never touched (``-0.5`` stays a number), and
neither is a cell already starting with ``'``, so neutralising twice changes nothing.

lungcad's own readers (:func:`lungcad.evaluation.predictions.read_predictions`) take the quote
off again with :func:`restore_formulas`, so key columns such as ``path`` still join with
labels.csv and split files. The one ambiguity: a name that itself begins with ``'`` followed by
one of those characters reads back without its quote.

Use :func:`neutralise_formulas` on a table just before writing it as CSV for users
(predictions.csv, segmentation.csv, ...), :func:`safe_cell` on one value.
"""

from __future__ import annotations

import re

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def safe_cell(value):
    """``value`` with a leading ``'`` if it is text a spreadsheet would take as a formula;
    anything else (numbers, missing values, plain text) unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(value):
        return QUOTE + value
    return value


def restore_cell(value):
    """The inverse of :func:`safe_cell` for what lungcad wrote."""
    if isinstance(value, str) and value.startswith(QUOTE) and value[1:].startswith(FORMULA_STARTS):
        return value[1:]
    return value


def _map_text(frame: pd.DataFrame, cell) -> pd.DataFrame:
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].map(cell, na_action="ignore")
    out.columns = [cell(c) for c in out.columns]
    out.attrs.update(frame.attrs)
    return out


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells and column names are safe to open in a spreadsheet."""
    return _map_text(frame, safe_cell)


def restore_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` as it was before :func:`neutralise_formulas` (for reading back)."""
    return _map_text(frame, restore_cell)
