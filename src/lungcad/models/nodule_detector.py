"""``nodule-detector-lite0``: a dense nodule detector on frozen multi-level ImageNet features.

The whole ImageNet EfficientNet-Lite0 stays frozen. Four of its levels (blocks 4, 7, 10 and
15: strides 8, 16, 16 and 32; 40 + 80 + 112 + 320 channels) are brought to one grid of 8 px
cells (64 x 64 at 512 px: 5.6 mm cells on a JSRT image) and standardised with the training
images' channel statistics; a small convolutional head (1x1, then 3x3) gives per cell two logits:
``nodule`` (a nodule covers this cell) and ``malignant`` (the nodule here is malignant).
Training (``lungcad.training.nodule_detector``) supervises them with the JSRT nodule positions
and sizes; prediction needs only the image.

- :meth:`heatmap`: (N, 2, H/8, W/8) cell logits (nodule, malignant-given-nodule);
- ``forward``: the (N, 1) image logit, the maximum over cells (multiple-instance pooling) of the
  nodule logit (``output="nodule"``) or of logit(P(nodule) * P(malignant | nodule))
  (``output="malignant"``), so the network is a binary lungcad classifier too.

The marks themselves (local maxima of the nodule map inside the lungs) are made by
:mod:`lungcad.detection`. Plain torch ops only, so it exports to ONNX.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from lungcad.errors import LungcadError
from lungcad.models.efficientnet_lite import LITE_MEAN, LITE_STD, build_lite0_backbone
from lungcad.models.nodule_heatmap import OUTPUTS, output_map
from lungcad.models.registry import register_model

LEVELS = (4, 7, 10, 15)        # Lite0 blocks whose outputs feed the head
LEVEL_CHANNELS = (40, 80, 112, 320)
CELL_STRIDE = 8                # input pixels per cell


class NoduleDetectorLite0(nn.Module):
    stride = CELL_STRIDE
    flip_average = True  # every reading averages the image's and its mirror image's cells

    def __init__(self, num_outputs: int = 1, in_channels: int = 1, pretrained: bool = True,
                 output: str = "nodule", head_channels: int = 64,
                 weights_path: str | None = None, weights_sha256: str | None = None):
        super().__init__()
        if num_outputs != 1:
            raise LungcadError("nodule-detector-lite0 is a binary model (num_outputs 1), "
                               f"got {num_outputs}")
        if output not in OUTPUTS:
            raise LungcadError(f"nodule-detector-lite0: output must be one of {OUTPUTS}, "
                               f"got {output!r}")
        self.output = output
        lite = build_lite0_backbone(in_channels, bool(pretrained), weights_path, weights_sha256)
        self.stem = nn.Sequential(lite._conv_stem, lite._bn0, nn.ReLU6())
        self.blocks = nn.ModuleList(lite._blocks[:LEVELS[-1] + 1])
        channels = sum(LEVEL_CHANNELS)
        # the training images' channel mean and standard deviation (set by the trainer)
        self.register_buffer("feature_mean", torch.zeros(1, channels, 1, 1))
        self.register_buffer("feature_std", torch.ones(1, channels, 1, 1))
        self.head = nn.Sequential(
            nn.Conv2d(channels, head_channels, 1, bias=False),
            nn.BatchNorm2d(head_channels), nn.ReLU(inplace=True),
            nn.Conv2d(head_channels, head_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(head_channels), nn.ReLU(inplace=True),
            nn.Conv2d(head_channels, 2, 1))
        with torch.no_grad():  # nodules cover a small share of the cells
            self.head[-1].bias.copy_(torch.tensor([-4.0, 0.0]))

    def frozen_parameters(self) -> list[nn.Parameter]:
        return [p for m in (self.stem, self.blocks) for p in m.parameters()]

    def frozen_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 552, H/8, W/8): the four levels on the cell grid, before standardisation."""
        grid = (x.shape[-2] // CELL_STRIDE, x.shape[-1] // CELL_STRIDE)
        x = self.stem(x)
        levels = []
        for k, block in enumerate(self.blocks):
            x = block(x)
            if k in LEVELS:
                if x.shape[-2:] == grid:
                    levels.append(x)
                else:
                    levels.append(F.interpolate(x, size=grid, mode="bilinear",
                                                align_corners=False))
        return torch.cat(levels, dim=1)

    def cells_from_features(self, features: torch.Tensor) -> torch.Tensor:
        return self.head((features - self.feature_mean) / self.feature_std)

    def cell_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 2, H/8, W/8): per-cell nodule logit and malignant-given-nodule logit, the mean of
        the image's and its mirror image's (mapped back): flip test-time augmentation, as the
        trainer scores its validation images."""
        n = x.shape[0]
        features = self.frozen_features(torch.cat([x, x.flip(-1)]))
        return (self.cells_from_features(features[:n])
                + self.cells_from_features(features[n:].flip(-1))) / 2

    def mirror_passes(self, layer: str) -> tuple[bool, ...]:
        """For saliency (:mod:`lungcad.explain.mirror_hooks`): per run of ``layer`` in one
        forward, in order, whether its output is mirrored. The backbone runs once on the images
        then their mirror images (one batch); the head runs twice, on features already flipped
        back."""
        return (False, False) if layer.startswith("head") else (False, True)

    def heatmap(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, H/8, W/8) cell logits of the chosen output."""
        return output_map(self.cell_logits(x), self.output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.amax(self.heatmap(x), dim=(2, 3)).reshape(-1, 1)


@register_model(
    "nodule-detector-lite0", input_size=512, in_channels=1, target_layer="head.4",
    kind="detector",
    description="frozen ImageNet EfficientNet-Lite0, four levels on an 8 px cell grid, small "
                "conv head: nodule and malignancy per cell; marks = local maxima in the lungs",
    mean=LITE_MEAN, std=LITE_STD, size_multiple=32,
    defaults={"pretrained": True, "output": "nodule"})
def nodule_detector_lite0(num_outputs: int = 1, in_channels: int = 1,
                          **kwargs) -> NoduleDetectorLite0:
    return NoduleDetectorLite0(num_outputs=num_outputs, in_channels=in_channels, **kwargs)
