"""Atomic checkpoint writes; weights-only loads."""

from __future__ import annotations

import argparse

import pytest
import torch

from lungcad.errors import LungcadError
from lungcad.training.checkpoint_io import AtomicCheckpointIO, load_checkpoint_file


def test_save_replaces_whole_file_and_leaves_no_temp(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "ck" / "last.ckpt"
    io.save_checkpoint({"epoch": 1, "state_dict": {"w": torch.ones(3)}}, path)
    io.save_checkpoint({"epoch": 2, "state_dict": {"w": torch.zeros(3)}}, path)
    loaded = io.load_checkpoint(path)
    assert loaded["epoch"] == 2 and torch.equal(loaded["state_dict"]["w"], torch.zeros(3))
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"epoch": 1}, path)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("lungcad.atomic.os.fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert io.load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_loading_refuses_pickled_code_and_damaged_files(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"epoch": 1, "obj": argparse.Namespace(code="arbitrary object")}, path)
    with pytest.raises(LungcadError, match="cannot load"):
        load_checkpoint_file(path)
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(path.read_bytes()[:50])
    with pytest.raises(LungcadError, match="cannot load"):
        load_checkpoint_file(broken)
