"""atomic_write: a new file follows the umask; a replaced file keeps its mode."""

from __future__ import annotations

import os
import stat

import pytest

from lungcad.atomic import atomic_write


@pytest.fixture
def umask():
    previous = os.umask(0o022)
    yield lambda value: os.umask(value)
    os.umask(previous)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_file_follows_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    path = atomic_write(tmp_path / "new.txt", b"data")
    assert stat.S_IMODE(path.stat().st_mode) == expected
    assert path.read_bytes() == b"data"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o600, 0o444])
def test_replaced_file_keeps_its_mode(tmp_path, umask, mode):
    umask(0o077)
    path = tmp_path / "old.txt"
    path.write_bytes(b"old")
    path.chmod(mode)
    atomic_write(path, b"new")
    assert stat.S_IMODE(path.stat().st_mode) == mode and path.read_bytes() == b"new"


def test_no_temporary_file_is_left_behind(tmp_path, umask):
    atomic_write(tmp_path / "a.txt", b"1")
    atomic_write(tmp_path / "a.txt", b"2", durable=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
