"""Patches around nodule candidates, at several fields of view, for a second-stage classifier.

:func:`sample_patches` cuts, for each (x, y) of an image, a ``side`` x ``side`` patch per field
of view in ``context_mm`` (the channels of one patch: a close look and a wider one), each
rotated, mirrored and scaled as asked (augmentation in training; the eight rotations and
mirror images of the dihedral group at test time: :data:`DIHEDRAL`), by bilinear resampling
(``torch.nn.functional.grid_sample``). Each channel is standardised to zero mean and unit
variance, so a patch tells the shape and local contrast of what it shows, not the film's
brightness.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from lungcad.errors import LungcadError

# the eight symmetries of a square: (quarter turns, mirrored)
DIHEDRAL = tuple((k, m) for m in (False, True) for k in range(4))


@dataclass(frozen=True)
class PatchSettings:
    side: int = 32                               # pixels a side of each channel
    context_mm: tuple[float, ...] = (24.0, 48.0)  # field of view of each channel

    def __post_init__(self):
        if self.side < 8 or not self.context_mm or min(self.context_mm) <= 0:
            raise LungcadError(f"patches need a side of at least 8 px and positive fields of "
                               f"view, not side {self.side}, context {self.context_mm} mm")

    @property
    def channels(self) -> int:
        return len(self.context_mm)


def sample_patches(image: torch.Tensor, xy: np.ndarray, mm_per_pixel: float,
                   settings: PatchSettings = PatchSettings(), angle=None, mirror=None,
                   scale=None) -> torch.Tensor:
    """(N, C, side, side) standardised patches of ``image`` ((H, W) float tensor) centred on
    ``xy`` ((N, 2) pixel columns and rows), one channel per field of view; ``angle`` (radians),
    ``mirror`` (bool) and ``scale`` (> 1 zooms out) per patch, or None for none."""
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    n, side = len(xy), settings.side
    if n == 0:
        return torch.zeros(0, settings.channels, side, side)
    h, w = image.shape
    angle = np.zeros(n) if angle is None else np.asarray(angle, np.float64)
    mirror = np.zeros(n, bool) if mirror is None else np.asarray(mirror, bool)
    scale = np.ones(n) if scale is None else np.asarray(scale, np.float64)
    steps = (np.arange(side) - (side - 1) / 2) / side              # in fields of view
    gy, gx = np.meshgrid(steps, steps, indexing="ij")
    grids = []
    for fov in settings.context_mm:
        half = fov / mm_per_pixel * scale                           # pixels per field of view
        u = np.where(mirror[:, None, None], -gx, gx) * half[:, None, None]
        v = gy[None] * half[:, None, None]
        c, s = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
        px = xy[:, 0, None, None] + c * u - s * v
        py = xy[:, 1, None, None] + s * u + c * v
        # pixel centres to grid_sample's [-1, 1] (align_corners=False)
        grids.append(np.stack([(2 * px + 1) / w - 1, (2 * py + 1) / h - 1], axis=-1))
    grid = torch.from_numpy(np.concatenate(grids).astype(np.float32))   # (C * N, side, side, 2)
    source = image.reshape(1, 1, h, w).float().expand(len(grid), 1, h, w)
    out = F.grid_sample(source, grid, mode="bilinear", padding_mode="border",
                        align_corners=False)[:, 0]
    out = out.reshape(settings.channels, n, side, side).transpose(0, 1)
    mean = out.mean(dim=(2, 3), keepdim=True)
    std = out.std(dim=(2, 3), keepdim=True)
    return (out - mean) / (std + 1e-3)


def dihedral_patches(image: torch.Tensor, xy: np.ndarray, mm_per_pixel: float,
                     settings: PatchSettings = PatchSettings()) -> torch.Tensor:
    """(8, N, C, side, side): each candidate's patch in the eight symmetries of :data:`DIHEDRAL`
    (for test-time averaging)."""
    n = len(np.asarray(xy).reshape(-1, 2))
    return torch.stack([sample_patches(image, xy, mm_per_pixel, settings,
                                       angle=np.full(n, k * np.pi / 2), mirror=np.full(n, m))
                        for k, m in DIHEDRAL])
