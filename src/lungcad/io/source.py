"""Turn what a caller passes (a path or uploaded bytes) into bytes plus a display name."""

from __future__ import annotations

from pathlib import Path

from lungcad.errors import LungcadError


def read_source(source: str | Path | bytes | bytearray | memoryview,
                name: str | None = None) -> tuple[bytes, str]:
    """Return the file's bytes and a name for messages (the path, or ``name``, or "upload")."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label = name or "uploaded image"
    elif isinstance(source, (str, Path)):
        path = Path(source)
        label = str(path)
        _check_is_file(path)
        try:
            data = path.read_bytes()
        except OSError as error:
            raise LungcadError(f"could not read {path}: {error.strerror or error}") from error
    else:
        raise LungcadError(
            f"load_image needs a path or bytes, not {type(source).__name__}")
    if not data:
        raise LungcadError(f"{label} is empty (0 bytes)")
    return data, label


def read_head(path: str | Path, n_bytes: int = 132) -> tuple[bytes, int, str]:
    """The first ``n_bytes`` of a file, its size and its name, without reading all of it."""
    path = Path(path)
    _check_is_file(path)
    try:
        with path.open("rb") as stream:
            head = stream.read(n_bytes)
        size = path.stat().st_size
    except OSError as error:
        raise LungcadError(f"could not read {path}: {error.strerror or error}") from error
    if size == 0:
        raise LungcadError(f"{path} is empty (0 bytes)")
    return head, size, str(path)


def _check_is_file(path: Path) -> None:
    if not path.exists():
        raise LungcadError(f"image not found: {path}")
    if not path.is_file():
        raise LungcadError(f"not a file: {path} (give the path of one image file)")


def extension_of(source: str | Path | bytes | bytearray | memoryview, name: str | None) -> str:
    """Lower-case extension ('.img') from the path, or from ``name`` for bytes; '' if none."""
    if isinstance(source, (str, Path)):
        return Path(source).suffix.lower()
    return Path(name).suffix.lower() if name else ""
