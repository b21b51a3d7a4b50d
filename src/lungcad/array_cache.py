"""The one on-disk cache of arrays: decoded images and frozen-network features.

Every cache of lungcad lives under one root, ``$LUNGCAD_CACHE_DIR`` (else ``~/.cache/lungcad``),
one folder per namespace. An :class:`ArrayCache` is a namespace and a version: an entry's key
hashes both with what the array was made from (a source file's identity: resolved path, size,
modification time; the preprocessing; the weights...), so editing a source, changing the recipe
or bumping the version makes a new key, and a stale entry is never read. A damaged entry is
deleted and made again, never trusted. Entries are written through a temporary file and a rename.

Namespaces in use: ``images`` (decoded, resized images: :mod:`lungcad.data.cache`),
``lite0-features`` (pooled ImageNet features: the linear probe), ``ct-finetune-views`` (frozen
block outputs of augmented views: the CT fine-tuning recipe); beside them, not arrays,
``image-hashes`` (:mod:`lungcad.data.dedup`) and ``onnx`` (exported graphs).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from lungcad.atomic import atomic_write


def cache_root() -> Path:
    """``$LUNGCAD_CACHE_DIR``, else ``~/.cache/lungcad``: the folder of every cache."""
    root = os.environ.get("LUNGCAD_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "lungcad"


def file_identity(path: str | Path) -> dict:
    """What identifies a source file's content cheaply: resolved path, size, mtime."""
    path = Path(path)
    st = path.stat()
    return {"path": str(path.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


class ArrayCache:
    """One namespace of the array cache (see the module's docstring)."""

    def __init__(self, namespace: str, version: int):
        self.namespace = namespace
        self.version = version

    @property
    def folder(self) -> Path:
        return cache_root() / self.namespace

    def key(self, **ident) -> str:
        """The key of the array made from ``ident`` (JSON-serialisable values)."""
        text = json.dumps({"namespace": self.namespace, "version": self.version, **ident},
                          sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        """The stored array, or None where there is none (a damaged one is deleted)."""
        entry = self.path(key)
        try:
            return np.load(entry, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (ValueError, OSError, EOFError):
            entry.unlink(missing_ok=True)
            return None

    def put(self, key: str, array: np.ndarray) -> None:
        """Store ``array`` (a cache only saves time: a folder that cannot be written is no error)."""
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(array), allow_pickle=False)
        try:
            atomic_write(self.path(key), buffer.getvalue(), durable=False)
        except OSError:
            pass
