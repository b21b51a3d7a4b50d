"""Spreadsheet-safe CSV cells: formula-like text is prefixed with ', numbers are left alone,
and lungcad's readers take the prefix off again."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from lungcad.csvsafe import neutralise_formulas, restore_formulas, restore_cell, safe_cell


@pytest.mark.parametrize("text", ["=1+1", "+cmd", "-2+3", "@SUM(A1)", "\t=x", "\r=x",
                                  "=HYPERLINK(\"http://x\")"])
def test_formula_like_text_is_prefixed_and_restored(text):
    assert safe_cell(text) == "'" + text
    assert restore_cell(safe_cell(text)) == text


@pytest.mark.parametrize("value", ["plain.png", "images/a.png", "", "-1.5", "+3", "-2e-3", "42",
                                   1.5, -2, None, np.nan])
def test_other_values_are_unchanged(value):
    assert safe_cell(value) is value or safe_cell(value) == value
    assert restore_cell(safe_cell(value)) is value or restore_cell(safe_cell(value)) == value


def test_neutralising_twice_changes_nothing_more():
    assert safe_cell(safe_cell("=x")) == "'=x"


def test_frame_round_trip_through_csv_keeps_numbers_numeric():
    frame = pd.DataFrame({"path": ["=a.png", "b.png", "-c.png"], "prob": [0.25, -0.5, 1.0],
                          "=meta": ["@x", "y", None]})
    safe = neutralise_formulas(frame)
    assert frame["path"].tolist() == ["=a.png", "b.png", "-c.png"]  # the input is not changed
    text = safe.to_csv(index=False)
    for line in text.splitlines():
        for cell in line.split(","):
            assert cell[:1] not in ("=", "+", "@") and not (cell[:1] == "-" and cell[1:2] == "c")
    back = restore_formulas(pd.read_csv(io.StringIO(text)))
    assert list(back.columns) == ["path", "prob", "=meta"]
    assert back["path"].tolist() == frame["path"].tolist()
    assert back["prob"].tolist() == [0.25, -0.5, 1.0]
    assert back["=meta"].tolist()[:2] == ["@x", "y"] and pd.isna(back["=meta"][2])
