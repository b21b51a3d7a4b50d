"""``nodule-two-stage-lite0``: the nodule heatmap (stage 1) and a patch classifier (stage 2).

Stage 1 is ``nodule-heatmap-lite0`` unchanged: its cell maps give the candidates, its image
logit (the strongest cell) is this network's ``forward``, so the image-level output, heatmaps
and ONNX export are stage 1's. Stage 2 (:mod:`lungcad.models.nodule_patch`) scores patches cut
around each candidate from the same preprocessed input (:mod:`lungcad.models.patches`;
each channel standardised, so the input's normalisation does not matter); the detector fuses
the two (:mod:`lungcad.detection.second_stage`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lungcad.models.efficientnet_lite import LITE_MEAN, LITE_STD
from lungcad.models.nodule_heatmap import NoduleHeatmapLite0
from lungcad.models.nodule_patch import build_patch_classifier, score_candidates
from lungcad.models.patches import PatchSettings
from lungcad.models.registry import register_model


class NoduleTwoStageLite0(nn.Module):
    stride = 16

    def __init__(self, num_outputs: int = 1, in_channels: int = 1, pretrained: bool = True,
                 output: str = "nodule", head_channels: int = 64, flip_average: bool = False,
                 patch_kind: str = "cnn", patch_side: int = 32,
                 context_mm: tuple[float, ...] = (24.0, 48.0), patch_args: dict | None = None,
                 weights_path: str | None = None, weights_sha256: str | None = None):
        super().__init__()
        self.stage1 = NoduleHeatmapLite0(num_outputs, in_channels, pretrained, output,
                                         head_channels, weights_path, weights_sha256,
                                         flip_average)
        self.patches = PatchSettings(int(patch_side), tuple(float(c) for c in context_mm))
        args = dict(patch_args or {})
        if patch_kind == "lite0":
            args.setdefault("pretrained", bool(pretrained))
        self.stage2 = build_patch_classifier(patch_kind, self.patches.channels, **args)

    # stage 1's face: what every heatmap detector offers
    @property
    def output(self) -> str:
        return self.stage1.output

    @output.setter
    def output(self, value: str) -> None:
        self.stage1.output = value

    @property
    def flip_average(self) -> bool:
        return self.stage1.flip_average

    def cell_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage1.cell_logits(x)

    def logits_and_cells(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.stage1.logits_and_cells(x)

    def heatmap(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage1.heatmap(x)

    def mirror_passes(self, layer: str) -> tuple[bool, ...]:
        return self.stage1.mirror_passes(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage1(x)

    # stage 2
    def candidate_scores(self, image: torch.Tensor, xy: np.ndarray,
                         mm_per_pixel: float) -> np.ndarray:
        """P(nodule) of each candidate ((N, 2) x, y in ``image``'s pixels; ``image`` (S, S)),
        averaged over the eight symmetries of the square."""
        return score_candidates(self.stage2, image, xy, mm_per_pixel, self.patches, tta=True)


@register_model(
    "nodule-two-stage-lite0", input_size=512, in_channels=1, target_layer="stage1.head.3",
    description="nodule-heatmap-lite0 (stage 1: candidates and image score) plus a patch "
                "classifier that re-scores each candidate (stage 2); a detector "
                "(lungcad.detection.second_stage)",
    mean=LITE_MEAN, std=LITE_STD, size_multiple=32,
    defaults={"pretrained": True, "output": "nodule"})
def nodule_two_stage_lite0(num_outputs: int = 1, in_channels: int = 1,
                           **kwargs) -> NoduleTwoStageLite0:
    return NoduleTwoStageLite0(num_outputs=num_outputs, in_channels=in_channels, **kwargs)
