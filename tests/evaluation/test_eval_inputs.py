"""Bad predictions files: one-line error and exit status 2 through the CLI, never a traceback."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lungcad.cli import main
from evaluation_synthetic import binary_predictions, multiclass_predictions


def _drop(column):
    return lambda f: f.drop(columns=[column])


def _set(column, row, value):
    def change(frame):
        frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value
        return frame
    return change


def _off_by(row, delta):
    def change(frame):
        frame.loc[row, "prob_rest"] = frame.loc[row, "prob_rest"] + delta
        return frame
    return change


BAD_FILES = {
    "no path column": (_drop("path"), "missing column(s) ['path']"),
    "no true_label column": (_drop("true_label"), "no true_label column"),
    "one prob column": (_drop("prob_rest"), "found 1 prob_<class> column"),
    "probability above 1": (_set("prob_malignant", 3, 1.5), "row 4 (path images/case0003.png): "
                                                            "prob_malignant=1.5 is not a probability"),
    "negative probability": (_set("prob_rest", 0, -0.2), "is not a probability in [0, 1]"),
    "text probability": (_set("prob_rest", 5, "high"), "'high' is not a probability"),
    "missing probability": (_set("prob_rest", 5, np.nan), "is not a probability"),
    "row not summing to 1": (_off_by(7, 0.05), "row 8 (path images/case0007.png): the "
                                               "probabilities sum to 1.0500, not 1"),
    "unknown true label": (_set("true_label", 2, "benign"),
                           "true_label 'benign' is not one of the classes"),
    "unknown predicted label": (_set("predicted_label", 2, "maybe"),
                                "predicted_label 'maybe' is not one of the classes"),
    "empty true label": (_set("true_label", 2, np.nan), "true_label is empty"),
    "no rows": (lambda f: f.iloc[:0], "has no rows"),
    "no predicted_label and no threshold": (_drop("predicted_label"),
                                            "no predicted_label column, and no threshold"),
}


def _run(capsys, *argv) -> tuple[int, str]:
    status = main(["evaluate", *map(str, argv)])
    captured = capsys.readouterr()
    return status, captured.err


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_content_gives_one_line_error_and_exit_2(tmp_path, capsys, case):
    change, message = BAD_FILES[case]
    frame = change(binary_predictions(n=30, seed=0, with_metadata=False))
    path = tmp_path / "predictions.csv"
    frame.to_csv(path, index=False)
    status, err = _run(capsys, path, "--bootstrap", 0, "--out", tmp_path / "report")
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("lungcad evaluate: error: ")
    assert str(path) in lines[0]
    assert message in lines[0]
    assert not (tmp_path / "report" / "report.json").exists()


def test_multiclass_rows_not_summing_to_one(tmp_path, capsys):
    frame = multiclass_predictions(n=30)
    frame["prob_normal"] = frame["prob_normal"] * 0.5
    frame.to_csv(tmp_path / "p.csv", index=False)
    status, err = _run(capsys, tmp_path / "p.csv", "--out", tmp_path / "r")
    assert status == 2 and "not 1" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("content", [b"", b"\x00\xff\xfe binary \x89PNG", b'a,b\n"unterminated,1\n'])
def test_unreadable_files(tmp_path, capsys, content):
    path = tmp_path / "p.csv"
    path.write_bytes(content)
    status, err = _run(capsys, path, "--out", tmp_path / "r")
    assert status == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_missing_file_and_bad_options(tmp_path, capsys):
    status, err = _run(capsys, tmp_path / "absent.csv", "--out", tmp_path / "r")
    assert status == 2 and "does not exist" in err
    binary_predictions(n=30).to_csv(tmp_path / "p.csv", index=False)
    for options, message in ([("--threshold", "youdn"), "unknown threshold rule"],
                             [("--threshold", "2"), "outside [0, 1]"],
                             [("--bootstrap", "-5"), "--bootstrap"],
                             [("--threshold", "validation"), "--validation"],
                             [("--model", "other"), "no rows of model 'other'"]):
        status, err = _run(capsys, tmp_path / "p.csv", *options, "--out", tmp_path / "r")
        assert status == 2, options
        assert message in err and len(err.strip().splitlines()) == 1, (options, err)


def test_threshold_on_multiclass_is_an_error(tmp_path, capsys):
    multiclass_predictions(n=30).to_csv(tmp_path / "m.csv", index=False)
    status, err = _run(capsys, tmp_path / "m.csv", "--threshold", "0.5", "--out", tmp_path / "r")
    assert status == 2 and "binary tasks only" in err


def test_same_image_scored_by_two_models_needs_model_option(tmp_path, capsys):
    a = binary_predictions(n=40, seed=0, model="a", with_metadata=False)
    b = binary_predictions(n=40, seed=1, model="b", with_metadata=False)
    frame = pd.concat([a, b], ignore_index=True)
    frame.to_csv(tmp_path / "both.csv", index=False)
    status, err = _run(capsys, tmp_path / "both.csv", "--out", tmp_path / "r")
    assert status == 2 and "--model" in err
    status, _ = _run(capsys, tmp_path / "both.csv", "--model", "b", "--bootstrap", 0,
                     "--out", tmp_path / "r")
    assert status == 0
