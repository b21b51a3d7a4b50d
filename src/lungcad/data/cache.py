"""Preprocessing cache: training reads prepared arrays instead of decoding sources every epoch.

An entry is keyed by the source file's identity (resolved path, size, modification time) and the
preprocessing (target size, reader options, cache format version), so editing the source or
changing the preprocessing makes a new key; stale entries are never read.
The folder is ``$LUNGCAD_CACHE_DIR``, else ``~/.cache/lungcad/preprocessed``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from lungcad.atomic import atomic_write
from lungcad.preprocess import resize_area

CACHE_VERSION = 1


def cache_dir() -> Path:
    root = os.environ.get("LUNGCAD_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "lungcad" / "preprocessed"


def cache_key(path: Path, size: int, **reader_options) -> str:
    st = path.stat()
    ident = {"path": str(path.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns,
             "size": size, "reader": reader_options, "version": CACHE_VERSION}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def load_resized(path: str | Path, size: int, use_cache: bool = True, **reader_options) -> np.ndarray:
    """The image at ``path`` read by :func:`lungcad.io.load_image` and resized to size x size.

    Returns a 2-D float32 array in [0, 1]. ``reader_options`` go to ``load_image``.
    """
    from lungcad.io import load_image

    path = Path(path)
    if not use_cache:
        return resize_area(load_image(path, **reader_options).array, size)
    entry = cache_dir() / f"{cache_key(path, size, **reader_options)}.npy"
    if entry.is_file():
        try:
            return np.load(entry, allow_pickle=False)
        except (ValueError, OSError, EOFError):
            entry.unlink(missing_ok=True)  # a damaged entry is rebuilt, never trusted
    array = resize_area(load_image(path, **reader_options).array, size)
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    atomic_write(entry, buffer.getvalue(), durable=False)
    return array
