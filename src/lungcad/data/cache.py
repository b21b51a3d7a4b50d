"""Preprocessing cache: training reads prepared arrays instead of decoding sources every epoch.

An entry of the ``images`` namespace of the array cache (:mod:`lungcad.array_cache`, under
``$LUNGCAD_CACHE_DIR``) is keyed by the source file's identity (resolved path, size,
modification time) and the preprocessing (target size, reader options), so editing the source
or changing the preprocessing makes a new key; stale entries are never read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lungcad.array_cache import ArrayCache, file_identity
from lungcad.preprocess import resize_area

IMAGES = ArrayCache("images", version=1)


def load_resized(path: str | Path, size: int, use_cache: bool = True, **reader_options) -> np.ndarray:
    """The image at ``path`` read by :func:`lungcad.io.load_image` and resized to size x size.

    Returns a 2-D float32 array in [0, 1]. ``reader_options`` go to ``load_image``.
    """
    from lungcad.io import load_image

    path = Path(path)
    if not use_cache:
        return resize_area(load_image(path, **reader_options).array, size)
    key = IMAGES.key(file=file_identity(path), size=size, reader=reader_options)
    array = IMAGES.get(key)
    if array is None:
        array = resize_area(load_image(path, **reader_options).array, size)
        IMAGES.put(key, array)
    return array
