"""`lungcad predict`'s output: --out checked before any image is predicted, file modes,
spreadsheet-safe cells that `lungcad evaluate` reads back unchanged, and --frame."""

from __future__ import annotations

import os
import stat

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from predict_data import make_image

import lungcad.prediction
from lungcad.cli import main
from lungcad.evaluation.predictions import read_predictions


def run_cli(capsys, *argv, verb="predict"):
    status = main([verb, *map(str, argv)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture
def no_prediction(monkeypatch):
    """Fail the test if any image is predicted."""
    def refuse(*args, **kwargs):
        raise AssertionError("images were predicted before --out was checked")
    monkeypatch.setattr(lungcad.prediction, "predict_input", refuse)


@pytest.mark.parametrize("where", ["under_a_file", "is_a_folder", "deep_under_a_file"])
def test_out_is_checked_before_predicting(model_dir, dataset, tmp_path, capsys, no_prediction,
                                          where):
    folder, _ = dataset
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file")
    out = {"under_a_file": blocker / "preds.csv", "is_a_folder": tmp_path,
           "deep_under_a_file": blocker / "a" / "b" / "preds.csv"}[where]
    status, _, err = run_cli(capsys, model_dir, folder, "--out", out)
    assert status == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "File exists" not in err
    if where == "is_a_folder":
        assert "is a folder" in err and "predictions.csv" in err
    else:
        assert f"{blocker} is a file, not a folder" in err
    assert blocker.read_text() == "a file"


def test_heatmaps_folder_and_frame_are_checked_before_predicting(model_dir, dataset, tmp_path,
                                                                capsys, no_prediction):
    folder, _ = dataset
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file")
    for extra, message in ((["--heatmaps", blocker], f"{blocker} is a file, not a folder"),
                           (["--heatmaps", blocker / "sub"], f"{blocker} is a file, not a folder"),
                           (["--frame", -1], "--frame counts from 0"),
                           (["--frame", 1, "--heatmaps", tmp_path / "h"], "--frame")):
        status, _, err = run_cli(capsys, model_dir, folder, "--out", tmp_path / "p.csv", *extra)
        assert status == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_unwritable_out_folder_is_refused_before_predicting(model_dir, dataset, tmp_path, capsys,
                                                            no_prediction, monkeypatch):
    import tempfile

    folder, _ = dataset
    target = tmp_path / "readonly"
    target.mkdir()

    real = tempfile.TemporaryFile

    def refuse(*args, dir=None, **kwargs):  # root may write anywhere: simulate a read-only folder
        if dir is not None and os.fspath(dir) == str(target):
            raise PermissionError(13, "Permission denied")
        return real(*args, dir=dir, **kwargs)
    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    status, _, err = run_cli(capsys, model_dir, folder, "--out", target / "p.csv")
    assert status == 2 and "cannot write" in err and "Permission denied" in err


def test_written_files_follow_the_umask_or_keep_the_replaced_mode(model_dir, dataset, tmp_path,
                                                                   capsys):
    folder, _ = dataset
    images = [folder / "images" / "case000.png", folder / "images" / "case001.png"]
    old = os.umask(0o022)
    try:
        fresh = tmp_path / "fresh.csv"
        assert run_cli(capsys, model_dir, *images, "--out", fresh)[0] == 0
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o644
        kept = tmp_path / "kept.csv"
        kept.write_text("old")
        kept.chmod(0o664)
        assert run_cli(capsys, model_dir, *images, "--out", kept)[0] == 0
        assert stat.S_IMODE(kept.stat().st_mode) == 0o664
        report = tmp_path / "report"
        labelled = tmp_path / "labelled.csv"
        assert run_cli(capsys, model_dir, folder, "--out", labelled)[0] == 0
        assert run_cli(capsys, labelled, "--out", report, "--bootstrap", 0, verb="evaluate")[0] == 0
        for name in ("report.json", "report.md", "report.html"):
            assert stat.S_IMODE((report / name).stat().st_mode) == 0o644, name
    finally:
        os.umask(old)


FORMULA_NAMES = ["=HYPERLINK(1).png", "+cmd.png", "-2+3.png", "@SUM(A1).png", "plain.png"]


def test_file_names_that_look_like_formulas_are_neutralised_and_read_back(model_dir, tmp_path,
                                                                         capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for i, name in enumerate(FORMULA_NAMES):
        make_image(tmp_path / name, seed=i)
    out = tmp_path / "preds.csv"
    status, _, err = run_cli(capsys, model_dir, "--out", out, "--", *FORMULA_NAMES)
    assert status == 0, err
    raw = pd.read_csv(out, dtype=str, keep_default_na=False)
    for cell in raw.to_numpy().ravel():
        assert cell[:1] not in ("=", "+", "-", "@"), cell
    assert raw["path"].tolist() == ["'" + n if n[0] in "=+-@" else n for n in FORMULA_NAMES]
    # probabilities stay numbers, and lungcad's own reader restores the real names (the key)
    assert pd.to_numeric(raw["prob_malignant"]).between(0, 1).all()
    back = read_predictions(out)
    assert back["path"].tolist() == FORMULA_NAMES


def test_frame_option_picks_one_frame_of_a_multi_frame_file(model_dir, tmp_path, capsys):
    rng = np.random.default_rng(0)
    frames = [Image.fromarray((rng.random((48, 48)) * 255).astype(np.uint8)) for _ in range(3)]
    stack = tmp_path / "stack.tif"
    frames[0].save(stack, save_all=True, append_images=frames[1:])
    status, _, err = run_cli(capsys, model_dir, stack, "--out", tmp_path / "none.csv")
    assert status == 1 and "--frame N" in err
    single = tmp_path / "frame2.png"
    frames[2].save(single)
    status, out, err = run_cli(capsys, model_dir, stack, "--frame", 2)
    assert status == 0, err
    _, alone, _ = run_cli(capsys, model_dir, single)
    # same pixels, same verdict (apart from the file name)
    assert out.split(":", 1)[1] == alone.split(":", 1)[1]
    status, _, err = run_cli(capsys, model_dir, stack, "--frame", 5)
    assert status == 1 and "out of range" in err
