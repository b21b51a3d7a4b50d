"""Second-stage nodule classifiers: P(nodule) of a candidate from its multi-field patch.

Two kinds (``build_patch_classifier``):

- ``cnn``: a small network trained from scratch (four stages of two 3x3 convolutions with batch
  norm and ReLU, max pooling between them, global average pooling, dropout, one logit);
- ``lite0``: ImageNet EfficientNet-Lite0 reading the patch's channels (the stem's weights
  summed over RGB, repeated over the channels), its first ``frozen_blocks`` blocks kept at the
  ImageNet weights and the rest fine-tuned, global average pooling, dropout, one logit.

Input (N, C, S, S) standardised patches (:mod:`lungcad.models.patches`); output (N,) logits.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lungcad.errors import LungcadError
from lungcad.models.patches import PatchSettings, dihedral_patches, sample_patches

KINDS = ("cnn", "lite0")
SCORE_BATCH = 32   # patches a forward pass at prediction time


class PatchCNN(nn.Module):
    def __init__(self, in_channels: int = 2, widths: tuple[int, ...] = (32, 64, 128, 192),
                 dropout: float = 0.3):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for i, width in enumerate(widths):
            if i:
                layers.append(nn.MaxPool2d(2))
            for _ in range(2):
                layers += [nn.Conv2d(c, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                           nn.ReLU(inplace=True)]
                c = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(c, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))[:, 0]


class PatchLite0(nn.Module):
    def __init__(self, in_channels: int = 2, pretrained: bool = True, frozen_blocks: int = 5,
                 last_block: int = 11, dropout: float = 0.3):
        super().__init__()
        from lungcad.models.efficientnet_lite import build_lite0_backbone

        lite = build_lite0_backbone(in_channels, pretrained)
        if not 0 <= frozen_blocks < last_block <= len(lite._blocks):
            raise LungcadError(f"lite0 patch classifier: need 0 <= frozen_blocks < last_block <= "
                               f"{len(lite._blocks)}, got {frozen_blocks} and {last_block}")
        self.stem = nn.Sequential(lite._conv_stem, lite._bn0, nn.ReLU6())
        self.frozen = nn.ModuleList(lite._blocks[:frozen_blocks])
        self.tuned = nn.ModuleList(lite._blocks[frozen_blocks:last_block])
        width = lite._blocks[last_block - 1]._block_args.output_filters
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, 1))
        for p in list(self.stem.parameters()) + list(self.frozen.parameters()):
            p.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.stem.eval()           # frozen batch norms keep their ImageNet statistics
        self.frozen.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            x = self.stem(x)
            for block in self.frozen:
                x = block(x)
        for block in self.tuned:
            x = block(x)
        return self.head(x.mean(dim=(2, 3)))[:, 0]


def build_patch_classifier(kind: str, in_channels: int, **kwargs) -> nn.Module:
    if kind == "cnn":
        return PatchCNN(in_channels, **kwargs)
    if kind == "lite0":
        return PatchLite0(in_channels, **kwargs)
    raise LungcadError(f"unknown patch classifier {kind!r}; known: {list(KINDS)}")


def score_candidates(network: torch.nn.Module, image: torch.Tensor, xy: np.ndarray,
                     mm_per_pixel: float, patches: PatchSettings = PatchSettings(),
                     tta: bool = True) -> np.ndarray:
    """P(nodule) of each candidate (x, y) of one image, averaged over the eight symmetries of
    the square with ``tta``."""
    xy = np.asarray(xy, float).reshape(-1, 2)
    if not len(xy):
        return np.zeros(0)
    network.eval()
    with torch.inference_mode():
        if not tta:
            return _probabilities(network, sample_patches(image, xy, mm_per_pixel, patches)).numpy()
        views = dihedral_patches(image, xy, mm_per_pixel, patches)
        probs = _probabilities(network, views.flatten(0, 1)).reshape(len(views), len(xy))
        return probs.mean(dim=0).numpy()


def _probabilities(network: torch.nn.Module, patches: torch.Tensor) -> torch.Tensor:
    """sigmoid(network(patches)), read SCORE_BATCH patches at a time (eager PyTorch reads many
    small patches faster in small batches: docs/benchmarks.md)."""
    return torch.cat([torch.sigmoid(network(patches[i:i + SCORE_BATCH]))
                      for i in range(0, len(patches), SCORE_BATCH)])
