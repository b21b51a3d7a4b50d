"""What a model was trained on: the SHA-256 of each training image's decoded pixels.

A model directory may hold ``training_images.sha256``: the 32-byte SHA-256 digests of its
training images' pixels (:func:`pixel_digest`), sorted and concatenated (32 bytes an image: 6 KB
for 198 radiographs). With it, ``predict``, ``evaluate``, the page and the REST answer can say
that an image *was in the model's training data*, so that a score on it is not mistaken for a
validation. A model directory without the file knows nothing (``None``: unknown).

The digest is of the pixels as :func:`lungcad.io.load_image` decodes them (rounded to 16 bits,
with the image's shape), not of the file's bytes: the same image re-saved losslessly (PNG to TIFF,
other metadata) matches; one resized, cropped or re-encoded lossily does not.

``lungcad train`` and ``lungcad experiment --final`` record the images they trained on;
:func:`record_dataset` adds the record to an existing model directory (how the bundled models
got theirs: each was trained, with ``--final``, on every image of its shared dataset folder).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Iterable

import numpy as np

from lungcad.atomic import atomic_write
from lungcad.errors import LungcadError

TRAINING_FILE = "training_images.sha256"
DIGEST_BYTES = 32
IN_TRAINING_TEXT = "this image was in the model's training data"
IN_TRAINING_NOTE = (f"IN TRAINING DATA: {IN_TRAINING_TEXT}; its score says nothing about "
                    "images the model has not seen")


def pixel_digest(array: np.ndarray) -> bytes:
    """SHA-256 of a 2-D image in [0, 1] (as ``load_image`` returns it): its shape, then its
    pixels rounded to 16 bits, little-endian."""
    a = np.asarray(array, dtype=np.float32)
    pixels = np.round(np.clip(np.nan_to_num(a), 0.0, 1.0) * 65535).astype("<u2")
    digest = hashlib.sha256("x".join(map(str, a.shape)).encode() + b":")
    digest.update(np.ascontiguousarray(pixels).tobytes())
    return digest.digest()


def write_digests(directory: str | Path, digests: Iterable[bytes]) -> Path:
    """Write the record (sorted, duplicates once) into a model directory."""
    unique = sorted(set(digests))
    if any(len(d) != DIGEST_BYTES for d in unique):
        raise LungcadError("training-image digests are SHA-256 (32 bytes each)")
    path = Path(directory) / TRAINING_FILE
    atomic_write(path, b"".join(unique))
    load_digests.cache_clear()
    return path


def record_images(directory: str | Path, image_paths: Iterable[str | Path]) -> Path:
    """Record the images at ``image_paths`` (decoded with ``load_image``) as the training data
    of the model directory ``directory``."""
    from lungcad.io import load_image

    return write_digests(directory, (pixel_digest(load_image(p).array) for p in image_paths))


def record_view(directory: str | Path, view) -> Path:
    """Record a fold view's training images (``view.train``) for the model it trained."""
    return record_images(directory, [view.manifest.image_path(p) for p in view.train])


def record_dataset(directory: str | Path, dataset: str | Path) -> Path:
    """Record every image of a dataset folder (its labels.csv) as ``directory``'s training data."""
    from lungcad.data.manifest import Manifest

    manifest = Manifest.load(Path(dataset))
    return record_images(directory, [manifest.image_path(p) for p in manifest.paths])


@functools.lru_cache(maxsize=32)
def load_digests(directory: str) -> frozenset[bytes] | None:
    """The record of the model directory ``directory``, or None where it has none."""
    path = Path(directory) / TRAINING_FILE
    if not path.is_file():
        return None
    data = path.read_bytes()
    if len(data) % DIGEST_BYTES:
        raise LungcadError(f"{path}: damaged ({len(data)} bytes, not a multiple of "
                           f"{DIGEST_BYTES}); record the training images again")
    return frozenset(data[k:k + DIGEST_BYTES] for k in range(0, len(data), DIGEST_BYTES))


def in_training_data(model, array: np.ndarray) -> bool | None:
    """True where ``array`` was one of ``model``'s training images, False where it was not,
    None where the model directory records nothing."""
    directory = getattr(model, "directory", None)
    digests = load_digests(str(Path(directory).resolve())) if directory is not None else None
    if digests is None:
        return None
    return pixel_digest(array) in digests
