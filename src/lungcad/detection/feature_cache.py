"""The detector's frozen feature maps per image, computed once and reused.

Training a ``nodule-detector-lite0`` head reads, for every training image, the frozen network's
features of the image and of its mirror image (mapped back onto the image's cells), as float16
(N, 2, C, G, G). They are the same in every fold (the frozen part is ImageNet's), so they are
kept in this process's memory and on disk under ``$LUNGCAD_CACHE_DIR/../detector-features`` (by
default ``~/.cache/lungcad/detector-features``), keyed by the source file's identity, the input
size and a fingerprint of the frozen weights. A damaged entry is rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Sequence

import numpy as np

from lungcad.atomic import atomic_write

FEATURE_VERSION = 1
_MEMO: dict[str, np.ndarray] = {}


def feature_dir() -> Path:
    from lungcad.data.cache import cache_dir

    return cache_dir().parent / "detector-features"


def frozen_fingerprint(network) -> str:
    """A short hash of the frozen weights (a random stem must not read ImageNet features)."""
    h = hashlib.sha256()
    for p in network.frozen_parameters()[:4]:
        h.update(p.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def image_features(network, preprocessed: np.ndarray) -> np.ndarray:
    """(2, C, G, G) float16: features of one preprocessed image (C, S, S) and of its mirror
    image, the latter flipped back so that both describe the same cells."""
    import torch

    network.eval()
    with torch.inference_mode():
        x = torch.from_numpy(preprocessed[None])
        both = network.frozen_features(torch.cat([x, x.flip(-1)]))
        both[1] = both[1].flip(-1)
    return both.numpy().astype(np.float16)


def detector_features(network, manifest, paths: Sequence[str], size: int,
                      log=print) -> np.ndarray:
    """(N, 2, C, G, G) float16 features of the manifest's ``paths`` at ``size`` px."""
    from lungcad.data.cache import cache_key
    from lungcad.io import load_image
    from lungcad.models import model_info
    from lungcad.preprocess import Preprocessing

    info = model_info("nodule-detector-lite0")
    pre = Preprocessing(size, 1, info.mean, info.std)
    fingerprint = frozen_fingerprint(network)
    folder = feature_dir()
    out = []
    computed = 0
    for path in paths:
        source = manifest.image_path(path)
        key = hashlib.sha256(f"{cache_key(source, size)}:{fingerprint}:{FEATURE_VERSION}"
                             .encode()).hexdigest()
        if key not in _MEMO:
            entry = folder / f"{key}.npy"
            features = None
            if entry.is_file():
                try:
                    features = np.load(entry, allow_pickle=False)
                except (ValueError, OSError, EOFError):
                    entry.unlink(missing_ok=True)
            if features is None:
                features = image_features(network, pre.apply(load_image(source).array, path))
                buffer = io.BytesIO()
                np.save(buffer, features, allow_pickle=False)
                atomic_write(entry, buffer.getvalue(), durable=False)
                computed += 1
            _MEMO[key] = features
        out.append(_MEMO[key])
    if computed:
        log(f"frozen features computed for {computed} image(s), cached in {folder}")
    return np.stack(out)
