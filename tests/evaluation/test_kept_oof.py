"""studies/keep_oof.py keeps a detector run's out-of-fold marks without the dataset's clinical
columns, and studies/froc_paired.py reads the kept tables exactly as it reads the run folder."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _study(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "studies" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(folder: Path, scores: list[float]) -> Path:
    """A run folder as `lungcad experiment` writes it: four images, two with a nodule."""
    folder.mkdir()
    images = [f"images/IMG{k}.png" for k in range(4)]
    pd.DataFrame({
        "path": images, "true_label": ["nodule", "nodule", "no_nodule", "no_nodule"],
        "prob_nodule": [0.9, 0.4, 0.3, 0.2], "fold": [0, 0, 1, 1], "age": [61, 70, 55, 48],
        "diagnosis": ["adenocarcinoma", "unknown", "", ""],
    }).to_csv(folder / "oof_predictions.csv", index=False)
    # image 0: a hit (100, 100) and a false mark; image 1: a false mark only; 2, 3: false marks
    pd.DataFrame({
        "path": [images[0], images[0], images[1], images[2], images[3]],
        "x": [100.0, 400.0, 50.0, 300.0, 200.0], "y": [100.0, 400.0, 50.0, 300.0, 200.0],
        "radius_mm": 10.0, "score": scores, "malignancy": 0.5, "frame_size": 512,
        "model": "m@1", "fold": [0, 0, 0, 1, 1],
    }).to_csv(folder / "oof_findings.csv", index=False)
    return folder


@pytest.fixture()
def dataset(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    pd.DataFrame({
        "path": [f"images/IMG{k}.png" for k in range(4)],
        "x_512": [100.0, 300.0, None, None], "y_512": [100.0, 300.0, None, None],
        "size_mm": [20.0, 15.0, None, None], "subtlety": [3, 2, None, None],
    }).to_csv(folder / "labels.csv", index=False)
    return folder


def test_kept_tables_hold_the_marks_and_no_clinical_column(tmp_path):
    run = _run(tmp_path / "run", [0.8, 0.7, 0.6, 0.5, 0.123456789012345])
    assert _study("keep_oof").main([str(run), str(tmp_path / "kept")]) == 0
    findings = pd.read_csv(tmp_path / "kept" / "oof_findings.csv")
    predictions = pd.read_csv(tmp_path / "kept" / "oof_predictions.csv")
    assert list(findings.columns) == ["path", "x", "y", "radius_mm", "score", "frame_size", "fold"]
    assert list(predictions.columns) == ["path", "fold", "prob_nodule"]
    assert findings["score"].iloc[-1] == 0.123456789012345  # no rounding: ties stay as they were
    assert len(findings) == 5 and len(predictions) == 4


def test_paired_comparison_of_kept_tables_equals_that_of_the_runs(tmp_path, dataset, capsys):
    keep, paired = _study("keep_oof"), _study("froc_paired")
    a = _run(tmp_path / "a", [0.8, 0.7, 0.6, 0.5, 0.4])
    b = _run(tmp_path / "b", [0.3, 0.7, 0.6, 0.5, 0.4])  # its hit ranks below three false marks
    for run in (a, b):
        assert keep.main([str(run), str(tmp_path / f"kept-{run.name}")]) == 0
    capsys.readouterr()

    def compare(x, y):
        assert paired.main([str(x), str(y), "--dataset", str(dataset), "--resamples", "200"]) == 0
        lines = capsys.readouterr().out.splitlines()
        return lines[0], lines[2]  # the counts and the difference (line 1 names the folders)

    from_runs = compare(a, b)
    assert compare(tmp_path / "kept-a", tmp_path / "kept-b") == from_runs
    assert "difference -" in from_runs[1]  # b finds the same nodule later: a lower CPM


def test_a_folder_that_is_not_a_finished_run_is_refused(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert _study("keep_oof").main([str(tmp_path / "empty"), str(tmp_path / "kept")]) == 2
    assert "finished detector experiment" in capsys.readouterr().err
    assert not (tmp_path / "kept").exists()
