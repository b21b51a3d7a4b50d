"""`lungcad predict` on folders holding entries it cannot use: unreadable folders and links,
FIFOs, dangling and self-loop symbolic links. Each is named, the run goes on, the CSV is written
and the summary counts them. (Tests run as root: permission denial is simulated.)"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pandas as pd
import pytest
from predict_data import make_image

from lungcad.cli import main
from lungcad.prediction import file_input, images_in_folder


def run_cli(capsys, *argv):
    status = main(["predict", *map(str, argv)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _deny(monkeypatch, denied: set[Path], *, scandir: bool = False, stat: bool = False) -> None:
    """Make ``denied`` paths raise PermissionError as for a user who may not enter them."""
    denied_text = {str(p) for p in denied}

    def refuse(path):
        if os.fspath(path) in denied_text:
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))

    if scandir:
        real_scandir = os.scandir

        def scandir_(path="."):
            refuse(path)
            return real_scandir(path)
        monkeypatch.setattr(os, "scandir", scandir_)
    if stat:
        real_stat = os.stat

        def stat_(path, *args, **kwargs):
            if kwargs.get("follow_symlinks", True):
                refuse(path)
            return real_stat(path, *args, **kwargs)
        monkeypatch.setattr(os, "stat", stat_)


@pytest.fixture
def odd_folder(tmp_path):
    """Two good images and one of every entry that cannot be predicted."""
    root = tmp_path / "odd"
    make_image(root / "a.png", seed=1)
    make_image(root / "sub" / "b.png", seed=2)
    make_image(root / "locked" / "hidden_from_user.png", seed=3)   # a folder we may not enter
    os.mkfifo(root / "pipe.png")                                   # a FIFO named like an image
    os.symlink(root / "gone.png", root / "dangling.png")            # target does not exist
    os.symlink(root / "loop.png", root / "loop.png")                # points at itself
    secret = tmp_path / "secret"
    make_image(secret / "x.png", seed=4)
    os.symlink(secret / "x.png", root / "into_secret.png")          # into a folder we may not enter
    os.symlink(secret, root / "linked_folder")                      # links to folders: not followed
    return root, secret


def test_images_in_folder_names_every_entry_it_cannot_use(odd_folder, monkeypatch):
    root, secret = odd_folder
    _deny(monkeypatch, {root / "locked"}, scandir=True)
    _deny(monkeypatch, {root / "into_secret.png"}, stat=True)
    problems: list = []
    images, skipped = images_in_folder(root, problems)
    assert images == [root / "a.png", root / "sub" / "b.png"]
    assert skipped == []
    reasons = {Path(p).name: reason for p, reason in problems}
    assert set(reasons) == {"locked", "pipe.png", "dangling.png", "loop.png", "into_secret.png",
                            "linked_folder"}
    assert "permission denied" in reasons["locked"].lower()
    assert "permission denied" in reasons["into_secret.png"].lower()
    assert "fifo" in reasons["pipe.png"].lower()
    assert "broken symbolic link" in reasons["dangling.png"]
    assert "loop" in reasons["loop.png"]
    assert "not followed" in reasons["linked_folder"]


def test_predict_names_every_skipped_entry_and_still_writes_the_csv(model_dir, odd_folder,
                                                                   tmp_path, capsys, monkeypatch):
    root, _ = odd_folder
    _deny(monkeypatch, {root / "locked"}, scandir=True)
    _deny(monkeypatch, {root / "into_secret.png"}, stat=True)
    out = tmp_path / "odd.csv"
    status, stdout, err = run_cli(capsys, model_dir, root, "--out", out)
    assert "Traceback" not in err
    assert pd.read_csv(out)["path"].tolist() == [str(root / "a.png"), str(root / "sub" / "b.png")]
    for name in ("locked", "pipe.png", "dangling.png", "loop.png", "into_secret.png",
                 "linked_folder"):
        assert str(root / name) in err, name
    assert "6 entries skipped" in err          # the summary counts them
    assert status == 1                        # something the user pointed at was not predicted
    assert "wrote 2 prediction(s)" in stdout


def test_explicit_input_that_cannot_be_entered_is_skipped_with_a_message(model_dir, tmp_path,
                                                                         capsys, monkeypatch):
    good = make_image(tmp_path / "good.png", seed=5)
    secret = make_image(tmp_path / "secret" / "x.png", seed=6)
    link = tmp_path / "link.png"
    os.symlink(secret, link)
    _deny(monkeypatch, {link}, stat=True)
    inp = file_input([good, link])
    assert inp.files == [good]
    assert [p for p, _ in inp.skipped] == [str(link)]
    out = tmp_path / "two.csv"
    status, _, err = run_cli(capsys, model_dir, good, link, "--out", out)
    assert "Traceback" not in err and str(link) in err and "Permission denied" in err
    assert status == 1 and pd.read_csv(out)["path"].tolist() == [str(good)]


def test_access_lost_after_the_search_is_a_failure_not_a_traceback(model_dir, tmp_path,
                                                                   monkeypatch):
    from lungcad import load_model
    from lungcad.prediction import predict_input

    good = make_image(tmp_path / "good.png", seed=7)
    gone = make_image(tmp_path / "gone.png", seed=8)
    inp = file_input([good, gone])
    _deny(monkeypatch, {gone}, stat=True)  # access lost between the search and the reading
    result = predict_input(load_model(model_dir), inp)
    assert result.table["path"].tolist() == [str(good)]
    assert [key for key, _ in result.failures] == [str(gone)]
    assert "Permission denied" in result.failures[0][1]
