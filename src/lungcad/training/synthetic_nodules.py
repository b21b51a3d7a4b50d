"""Synthetic training images for the nodule heatmap: more nodules to learn from than JSRT's 123.

With ``synthetic: {copies: K, ...}`` in a ``nodule_heatmap`` config, every training image of the
fold is used K more times, each time with up to ``per_image`` simulated nodules added
(:class:`lungcad.detection.simulate.FoldSimulator`: projected spheres/ellipsoids and real
training nodules pasted with their background removed; sizes and contrasts drawn from the fold's
own training nodules). The nodules are placed inside the image's lungs (the bundled
``jsrt-lungs`` mask of the training image), at least ``clearance_mm`` from its real nodule; the
validation and test images of the fold are refused by the simulator and never read here.

The copies' cell targets are the image's own (its real nodule, if any) plus a disc per synthetic
nodule (the JSRT rule of :func:`lungcad.training.lesion_targets.cell_targets`). A synthetic
nodule is neither benign nor malignant: its cells' malignancy target is NaN, which the loss
leaves unsupervised (:func:`lungcad.training.nodule_heatmap.heatmap_loss`).

Images are simulated at the network's input size (``image_size``; 0.7 mm per pixel at 512 px
for a JSRT film), after the same area resize the preprocessing applies to the real images.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from lungcad.errors import LungcadError

NODULE_COLUMNS = ("x_512", "y_512", "size_mm")


@dataclass(frozen=True)
class SyntheticSettings:
    copies: int = 0                  # synthetic versions of each training image (0: off)
    per_image: int = 3               # nodules added to each copy (fewer where there is no room)
    kinds: tuple[str, ...] = ("sphere", "paste")
    clearance_mm: float = 30.0       # from the image's real nodule and from each other
    jitter: float = 0.05             # log-normal sigma of the drawn sizes and contrasts
    seed: int = 0

    @classmethod
    def from_mapping(cls, values: Mapping | None) -> "SyntheticSettings":
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise LungcadError(f"synthetic: unknown setting(s) {unknown}; known: {sorted(known)}")
        if "kinds" in values:
            values["kinds"] = tuple(values["kinds"])
        settings = cls(**values)
        if int(settings.copies) < 0 or int(settings.per_image) < 1:
            raise LungcadError(f"synthetic: copies must be >= 0 and per_image >= 1 (got "
                               f"{settings.copies} and {settings.per_image})")
        return settings


def nodule_discs(nodules: pd.DataFrame, grid: int, stride: int,
                 mm_per_pixel: float) -> np.ndarray:
    """(grid, grid) bool: the cells whose centre lies inside a nodule's disc (``x``, ``y`` in
    pixels of the network's input, ``diameter_mm``), and each nodule's centre cell."""
    centres = (np.arange(grid) + 0.5) * stride
    cy, cx = np.meshgrid(centres, centres, indexing="ij")
    cells = np.zeros((grid, grid), bool)
    for x, y, d in nodules[["x", "y", "diameter_mm"]].itertuples(index=False):
        cells |= (cx - x) ** 2 + (cy - y) ** 2 <= (d / 2 / mm_per_pixel) ** 2
        cells[min(int(y // stride), grid - 1), min(int(x // stride), grid - 1)] = True
    return cells


@dataclass
class SyntheticSet:
    images: list[np.ndarray]         # (S, S) in [0, 1], simulated
    base: list[int]                  # index of the training image each was made from
    nodules: list[pd.DataFrame]      # the synthetic nodules of each (x, y px, diameter_mm, ...)

    def targets(self, nodule: np.ndarray, malignant: np.ndarray, stride: int,
                mm_per_pixel: float) -> tuple[np.ndarray, np.ndarray]:
        """Cell targets of the synthetic images from the training images' own (``nodule``,
        ``malignant``: (N, G, G)): theirs plus the synthetic discs, malignancy NaN there."""
        grid = nodule.shape[-1]
        out_n = np.stack([nodule[b] for b in self.base]).astype(np.float32)
        out_m = np.stack([malignant[b] for b in self.base]).astype(np.float32)
        for k, found in enumerate(self.nodules):
            discs = nodule_discs(found, grid, stride, mm_per_pixel)
            out_n[k][discs] = 1.0
            out_m[k][discs & (nodule[self.base[k]] == 0)] = np.nan
        return out_n, out_m


def simulate_training_set(rows: pd.DataFrame, refused: Sequence[str],
                          load_image: Callable[[str], np.ndarray],
                          load_mask: Callable[[str], np.ndarray], mm_per_pixel: float,
                          settings: SyntheticSettings, log=print) -> SyntheticSet:
    """``settings.copies`` simulated versions of each training image (manifest ``rows``:
    ``path`` and the JSRT nodule columns), refusing every path of ``refused`` (the fold's
    validation and test images)."""
    from lungcad.detection.simulate import FoldSimulator

    missing = [c for c in NODULE_COLUMNS if c not in rows.columns]
    if missing:
        raise LungcadError(f"synthetic nodules are sized and placed from the JSRT nodule columns "
                           f"{list(NODULE_COLUMNS)}; the manifest has no {missing}")
    simulator = FoldSimulator(rows, refused, load_image, load_mask, mm_per_pixel,
                              clearance_mm=float(settings.clearance_mm),
                              jitter=float(settings.jitter))
    real = simulator.real
    rng = np.random.default_rng(int(settings.seed))
    index = {p: i for i, p in enumerate(simulator.paths)}
    images, base, nodules = [], [], []
    for _ in range(int(settings.copies)):
        for path in simulator.paths:
            made = simulator.simulate(path, int(settings.per_image), rng, settings.kinds)
            images.append(made.image)
            base.append(index[path])
            nodules.append(made.nodules)
    n = sum(len(f) for f in nodules)
    log(f"synthetic nodules: {n} on {len(images)} copies of {len(simulator.paths)} training "
        f"images ({', '.join(settings.kinds)}; {len(real)} real training nodules measured)")
    return SyntheticSet(images, base, nodules)


# decoded training images and their lung masks at the network's input size, by (dataset folder,
# path, size): the folds of one experiment share them
_IMAGES: dict[tuple, np.ndarray] = {}
_MASKS: dict[tuple, np.ndarray] = {}


def training_image_loaders(manifest, size: int) -> tuple[Callable, Callable]:
    """(image, lung mask) loaders of the manifest's images at ``size`` x ``size``: the image
    area-resized as the preprocessing does, in [0, 1]; the mask by the bundled ``jsrt-lungs``."""
    from lungcad.io import load_image as read
    from lungcad.preprocess import resize_area
    from lungcad.segmentation.predict import bundled_lung_model, segment_image

    root = str(manifest.root)

    def image(path: str) -> np.ndarray:
        key = (root, str(path), size)
        if key not in _IMAGES:
            _IMAGES[key] = resize_area(read(manifest.image_path(path)).array, size)
        return _IMAGES[key]

    def mask(path: str) -> np.ndarray:
        key = (root, str(path), size)
        if key not in _MASKS:
            lungs = bundled_lung_model()
            if lungs is None:
                raise LungcadError("synthetic nodules are placed inside the lungs: the lung "
                                   "segmenter jsrt-lungs is not installed")
            _MASKS[key] = segment_image(lungs.network, lungs.spec.preprocessing, image(path),
                                        str(path)).mask
        return _MASKS[key]

    return image, mask
