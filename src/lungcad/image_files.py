"""Find the image files under folders, and name every entry that cannot be used.

Used by ``lungcad predict`` and ``lungcad segment`` (through :mod:`lungcad.prediction`): a folder
is searched recursively; hidden files and folders are passed over; files that are not images
are skipped with a note; entries that cannot be used (a folder that cannot be read, a file that
cannot be accessed, a broken or looping symbolic link, a FIFO or other special file, a symbolic
link to a folder, which is not followed) are returned with the reason, never raised and never
dropped without a word.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from lungcad.errors import LungcadError
from lungcad.io import IMAGE_SUFFIXES

# Never images, and too common in dataset folders to note one by one.
_QUIET_SKIPS = frozenset({".csv", ".json", ".md", ".txt", ".yaml", ".yml"})


def is_image_file(path: Path) -> bool:
    """Known image ending, or (no or another ending) content a reader recognises. An OSError
    (the file cannot be read) is the caller's to report."""
    from lungcad.io import sniff_format
    from lungcad.io.jsrt import JSRT_BYTES

    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return True
    if suffix in _QUIET_SKIPS:
        return False
    if path.stat().st_size == JSRT_BYTES:
        return True
    with path.open("rb") as f:
        head = f.read(132)
    try:
        sniff_format(head, name=path.name)
        return True
    except LungcadError:
        return False


def entry_kind(path: Path) -> tuple[str, str]:
    """("file" | "folder" | "link-folder" | "problem", why a problem entry cannot be used)."""
    try:
        mode = os.stat(path).st_mode  # follows symbolic links
    except OSError as exc:
        if os.path.islink(path):
            if exc.errno == errno.ENOENT:
                return "problem", "broken symbolic link (its target does not exist)"
            if exc.errno == errno.ELOOP:
                return "problem", "symbolic link loop (its links never reach a file)"
        return "problem", f"cannot be accessed ({exc.strerror or exc})"
    if stat.S_ISDIR(mode):
        return ("link-folder" if os.path.islink(path) else "folder"), ""
    if stat.S_ISREG(mode):
        return "file", ""
    special = ("a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
               else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "special")
    return "problem", f"not a regular file ({special})"


def images_in_folder(folder: Path, problems: list[tuple[Path, str]] | None = None
                     ) -> tuple[list[Path], list[Path]]:
    """(images, skipped files) under ``folder``, recursively, sorted by path; hidden files and
    folders are passed over, non-image files are the skipped ones.

    Entries that cannot be used go to ``problems`` as (path, reason), sorted by path: a folder
    that cannot be read, a file that cannot be accessed, a broken or looping symbolic link, a
    FIFO or other special file, a symbolic link to a folder (not followed, so no walk loops).
    """
    found: list[Path] = []
    trouble: list[tuple[Path, str]] = []
    pending = [Path(folder)]
    while pending:
        current = pending.pop()
        try:
            with os.scandir(current) as entries:
                names = sorted(e.name for e in entries if not e.name.startswith("."))
        except OSError as exc:
            trouble.append((current, f"folder cannot be read ({exc.strerror or exc})"))
            continue
        for name in names:
            path = current / name
            kind, reason = entry_kind(path)
            if kind == "folder":
                pending.append(path)
            elif kind == "file":
                found.append(path)
            elif kind == "link-folder":
                trouble.append((path, "symbolic link to a folder, not followed (give the folder "
                                      "itself as an input)"))
            else:
                trouble.append((path, reason))
    images, skipped = [], []
    for path in sorted(found, key=lambda p: p.relative_to(folder).parts):
        try:
            (images if is_image_file(path) else skipped).append(path)
        except OSError as exc:
            trouble.append((path, f"cannot be read ({exc.strerror or exc})"))
    if problems is not None:
        problems += sorted(trouble, key=lambda item: item[0].relative_to(folder).parts)
    return images, skipped


def read_file_list(path: str | Path) -> list[str]:
    """The entries of a file list (``--list``): one path a line; blank lines and lines that
    start with ``#`` are passed over; a relative path is taken from the list's own folder."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise LungcadError(f"cannot read the file list {path}: {reason}") from None
    entries = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return [entry if os.path.isabs(entry) else str(path.parent / entry) for entry in entries]
