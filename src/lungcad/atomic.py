"""Write a file all or nothing: a crash leaves the old file or the new one, never half of one."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path


def atomic_write(path: str | Path, data: bytes, *, durable: bool = True) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    A new file gets the mode the umask gives (as ``open`` would: 0644 under umask 022); a file
    replaced keeps its mode. ``durable`` also fsyncs the file and its folder, so the new file
    survives a power cut (checkpoints, models, reports); caches that are rebuilt when lost pass
    ``durable=False``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        _keep_mode(tmp, path)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        _fsync_folder(path.parent)
    return path


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new file beside ``path``, created with mode 0666 less the umask (``tempfile.mkstemp``
    would make it 0600 whatever the umask)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary file name beside {path}")


def _keep_mode(tmp: Path, path: Path) -> None:
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:  # a new file: the umask already decided
        return
    os.chmod(tmp, mode)


def sync_folder(folder: str | Path) -> None:
    """fsync a folder, so that the renames and removals in it survive a power cut."""
    _fsync_folder(Path(folder))


def _fsync_folder(folder: Path) -> None:
    try:  # makes the rename itself durable; not every file system allows it
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
