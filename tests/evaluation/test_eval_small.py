"""`lungcad evaluate` on files too small to bootstrap: the defined metrics are reported, the
intervals are n/a, and a warning says why (never a SciPy traceback)."""

from __future__ import annotations

import json

import pytest

from lungcad.cli import main
from lungcad.evaluation.bootstrap import bootstrap_intervals
from evaluation_synthetic import binary_predictions, multiclass_predictions


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_one_row_gives_a_report_with_na_intervals_and_a_warning(tmp_path, capsys, kind):
    frame = (binary_predictions(n=1, seed=0, with_metadata=False) if kind == "binary"
             else multiclass_predictions(n=1, seed=0))
    path = tmp_path / "one.csv"
    frame.to_csv(path, index=False)
    status = main(["evaluate", str(path), "--out", str(tmp_path / "report")])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "Traceback" not in captured.err and "ValueError" not in captured.err
    assert "confidence intervals" in captured.err and "1 case" in captured.err
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    accuracy = report["metrics"]["accuracy"]
    assert accuracy["value"] in (0.0, 1.0)
    assert accuracy["ci_low"] is None and accuracy["ci_high"] is None
    assert "fewer than 2 cases" in accuracy["ci_method"]
    assert "1.000" in captured.out or "0.000" in captured.out
    assert (tmp_path / "report" / "report.html").is_file()


def test_bootstrap_of_one_case_gives_no_interval_instead_of_raising():
    intervals = bootstrap_intervals(1, lambda idx: {"mean": (idx * 0 + 1.0).mean(axis=-1)},
                                    n_resamples=50, seed=0)
    assert intervals["mean"].low is None and intervals["mean"].high is None
