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
        if not path.exists():
            raise LungcadError(f"image not found: {path}")
        if not path.is_file():
            raise LungcadError(f"not a file: {path} (give the path of one image file)")
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


def extension_of(source: str | Path | bytes | bytearray | memoryview, name: str | None) -> str:
    """Lower-case extension ('.img') from the path, or from ``name`` for bytes; '' if none."""
    if isinstance(source, (str, Path)):
        return Path(source).suffix.lower()
    return Path(name).suffix.lower() if name else ""
