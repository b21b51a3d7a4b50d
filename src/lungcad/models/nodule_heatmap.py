"""``nodule-heatmap-lite0``: a dense nodule detector whose image score is its strongest cell.

The first 11 blocks of ImageNet EfficientNet-Lite0 (stride 16, plus the stride-8 features
pooled to stride 16) feed a small convolutional head that predicts, for every 16x16 px cell, two
logits: ``nodule`` (a nodule covers this cell) and ``malignant`` (the nodule here is malignant).
Training supervises the map with the JSRT nodule positions and sizes (see
``lungcad.training.nodule_heatmap``); prediction needs only the image.

The image logit is the maximum over cells (multiple-instance pooling) of

- ``output="nodule"``: the nodule logit;
- ``output="malignant"``: logit(P(nodule) * P(malignant | nodule)).

``forward`` returns (N, 1) logits as every binary lungcad model does (for C > 2 classes, a
max-pooled cell logit per class); ``heatmap`` returns the
(N, 1, H/16, W/16) cell logits behind them. Plain torch ops only, so it exports to ONNX.

``flip_average=True`` (test-time augmentation) makes every reading of the cell maps the mean of
the image's and its mirror image's cell probabilities; training, which reads cached frozen
features, is unchanged by it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from lungcad.errors import LungcadError
from lungcad.models.efficientnet_lite import LITE_MEAN, LITE_STD, build_lite0_backbone
from lungcad.models.registry import register_model

# Lite0 blocks 0-4 end at stride 8 (40 channels), blocks 5-7 at stride 16 (80 channels),
# blocks 8-10 at stride 16 (112 channels). Training keeps the stem and blocks 0-7 at their
# ImageNet weights (so their outputs can be computed once and cached) and trains blocks 8-10
# and the head: on two shared CPU cores that is what a 10-fold study can afford.
_STRIDE8_END = 5
_FROZEN_END = 8
_STRIDE16_END = 11
OUTPUTS = ("nodule", "malignant")
_FLIP_EPS = 1e-6  # flip-averaged probabilities are kept this far from 0 and 1 (float32 logits)


def malignant_logit(nodule_logit: torch.Tensor, malignant_logit_: torch.Tensor) -> torch.Tensor:
    """logit(sigmoid(a) * sigmoid(b)) = -log(exp(-a) + exp(-b) + exp(-a-b)), computed stably."""
    a, b = nodule_logit, malignant_logit_
    return -torch.logsumexp(torch.stack([-a, -b, -a - b]), dim=0)


def mirror_mean(cells: torch.Tensor, mirror_cells: torch.Tensor) -> torch.Tensor:
    """Cell logits of the mean probability of ``cells`` and ``mirror_cells`` (the cell logits
    of the mirror image, flipped back here onto the same cells)."""
    p = (torch.sigmoid(cells) + torch.sigmoid(mirror_cells.flip(-1))) / 2
    p = p.clamp(_FLIP_EPS, 1 - _FLIP_EPS)
    return torch.log(p) - torch.log(1 - p)


def output_map(cells: torch.Tensor, output: str) -> torch.Tensor:
    """(N, 1, h, w) logits of ``output`` from (N, 2, h, w) cell logits (nodule, malignant given
    nodule): the nodule logit, or logit(P(nodule) * P(malignant | nodule))."""
    if output == "nodule":
        return cells[:, :1]
    return malignant_logit(cells[:, :1], cells[:, 1:])


def _cached_cell_logits(network, feats: dict, batch_size: int):
    """Cell logits (N, 2, h, w), batch by batch, from cached frozen features (``feats``: "f8",
    "f16" and the mirror image's "f8_flip", "f16_flip"), as the network's forward computes
    them, flip averaging included where the network has it."""
    network.eval()

    def cells_of(suffix: str, start: int) -> torch.Tensor:
        return network.cells_from_features(
            torch.from_numpy(feats["f8" + suffix][start:start + batch_size]),
            torch.from_numpy(feats["f16" + suffix][start:start + batch_size]))

    with torch.inference_mode():
        for start in range(0, len(feats["f8"]), batch_size):
            cells = cells_of("", start)
            if network.flip_average:
                cells = mirror_mean(cells, cells_of("_flip", start))
            yield cells


def score_features(network, feats: dict, output: str, batch_size: int = 32) -> np.ndarray:
    """Positive-class probabilities from cached frozen features, the same as the network's
    forward (:func:`_cached_cell_logits`). Sets the network's ``output``."""
    network.output = output
    out = [torch.sigmoid(torch.amax(output_map(cells, output), dim=(1, 2, 3))).numpy()
           for cells in _cached_cell_logits(network, feats, batch_size)]
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def cell_probabilities(network, feats: dict, batch_size: int = 32) -> np.ndarray:
    """(N, 2, h, w) cell probabilities (nodule, malignant given nodule) from cached frozen
    features (:func:`_cached_cell_logits`)."""
    out = [torch.sigmoid(cells).numpy()
           for cells in _cached_cell_logits(network, feats, batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 2, 0, 0), np.float32)


class NoduleHeatmapLite0(nn.Module):
    stride = 16

    def __init__(self, num_outputs: int = 1, in_channels: int = 1, pretrained: bool = True,
                 output: str = "nodule", head_channels: int = 64,
                 weights_path: str | None = None, weights_sha256: str | None = None,
                 flip_average: bool = False):
        super().__init__()
        if num_outputs < 1:
            raise LungcadError(f"nodule-heatmap-lite0: num_outputs must be >= 1, got {num_outputs}")
        if not isinstance(flip_average, bool) or (flip_average and num_outputs > 1):
            raise LungcadError("nodule-heatmap-lite0: flip_average is true or false, and only "
                               f"for the one-output network (got {flip_average!r} with "
                               f"{num_outputs} outputs)")
        # Test-time augmentation: every reading of the cell maps (marks, image probability,
        # heatmaps, exported graphs) averages the image's and its mirror image's probabilities.
        self.flip_average = flip_average
        if output not in OUTPUTS:
            raise LungcadError(f"nodule-heatmap-lite0: output must be one of {OUTPUTS}, "
                               f"got {output!r}")
        self.output = output
        lite = build_lite0_backbone(in_channels, bool(pretrained), weights_path, weights_sha256)
        self.stem = nn.Sequential(lite._conv_stem, lite._bn0, nn.ReLU6())
        self.blocks8 = nn.ModuleList(lite._blocks[:_STRIDE8_END])
        self.blocks16 = nn.ModuleList(lite._blocks[_STRIDE8_END:_FROZEN_END])
        self.blocks_tuned = nn.ModuleList(lite._blocks[_FROZEN_END:_STRIDE16_END])
        c8 = lite._blocks[_STRIDE8_END - 1]._block_args.output_filters
        c16 = lite._blocks[_STRIDE16_END - 1]._block_args.output_filters
        self.head = nn.Sequential(
            nn.Conv2d(c8 + c16, head_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(head_channels), nn.ReLU(inplace=True),
            nn.Conv2d(head_channels, head_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(head_channels), nn.ReLU(inplace=True))
        self.cells = nn.Conv2d(head_channels, 2, 1)
        # C > 2 classes: one max-pooled cell logit per class (not trained by the JSRT trainer,
        # which handles the binary tasks; kept so the architecture fits any lungcad task).
        self.class_cells = nn.Conv2d(head_channels, num_outputs, 1) if num_outputs > 1 else None
        # Nodules cover a small share of the cells: start the nodule logit near that prior.
        with torch.no_grad():
            self.cells.bias.copy_(torch.tensor([-4.0, 0.0]))

    def frozen_parameters(self) -> list[nn.Parameter]:
        """Parameters the trainer keeps at their ImageNet values (stem and blocks 0-7)."""
        return [p for m in (self.stem, self.blocks8, self.blocks16) for p in m.parameters()]

    def frozen_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(stride-8 features pooled to stride 16, block-7 output): the untrained part's output."""
        x = self.stem(x)
        for block in self.blocks8:
            x = block(x)
        f8 = F.avg_pool2d(x, 2, ceil_mode=True)
        for block in self.blocks16:
            x = block(x)
        return f8, x

    def cells_from_features(self, f8: torch.Tensor, f16: torch.Tensor) -> torch.Tensor:
        for block in self.blocks_tuned:
            f16 = block(f16)
        return self.cells(self.head(torch.cat([f8, f16], dim=1)))

    def cell_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 2, H/16, W/16): per-cell nodule logit and malignant-given-nodule logit. With
        ``flip_average``, the logits of the mean of the image's and its mirror image's cell
        probabilities (the mirror's flipped back onto the same cells)."""
        if not self.flip_average:
            return self.cells_from_features(*self.frozen_features(x))
        # the image's pass first, then the mirror image's: saliency relies on that order
        # (lungcad.explain.mirror_hooks). Two passes, not one batch of both: on a 2-core CPU
        # the batch was 35% slower (0.216 s against 0.159 s at 512 px; benchmarks/detector_latency.py measures the whole)
        return mirror_mean(self.cells_from_features(*self.frozen_features(x)),
                           self.cells_from_features(*self.frozen_features(x.flip(-1))))

    def mirror_passes(self, layer: str) -> tuple[bool, ...]:
        """For saliency (:mod:`lungcad.explain.mirror_hooks`): per run of ``layer`` in one
        forward, in order, whether its output is mirrored. With ``flip_average`` every layer
        runs on the image, then on its mirror image."""
        return (False, True) if self.flip_average else (False,)

    def heatmap(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, H/16, W/16) cell logits of the chosen output."""
        return output_map(self.cell_logits(x), self.output)

    def logits_and_cells(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward``'s image logits and ``cell_logits``'s maps from one pass (the exported
        detector's two outputs; the one-output network only)."""
        cells = self.cell_logits(x)
        return torch.amax(output_map(cells, self.output), dim=(2, 3)).reshape(-1, 1), cells

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.class_cells is not None:
            f8, f16 = self.frozen_features(x)
            for block in self.blocks_tuned:
                f16 = block(f16)
            return torch.amax(self.class_cells(self.head(torch.cat([f8, f16], dim=1))), dim=(2, 3))
        return torch.amax(self.heatmap(x), dim=(2, 3)).reshape(-1, 1)


@register_model(
    "nodule-heatmap-lite0", input_size=512, in_channels=1, target_layer="head.3",
    description="EfficientNet-Lite0 (ImageNet, blocks to stride 16) dense nodule heatmap; "
                "image logit = max over 16 px cells (trained with nodule positions); a model "
                "directory with `detection` also marks nodules with it (lungcad.detection)",
    mean=LITE_MEAN, std=LITE_STD, size_multiple=32,
    defaults={"pretrained": True, "output": "nodule"})
def nodule_heatmap_lite0(num_outputs: int = 1, in_channels: int = 1,
                         **kwargs) -> NoduleHeatmapLite0:
    return NoduleHeatmapLite0(num_outputs=num_outputs, in_channels=in_channels, **kwargs)
