"""``ct-cnn``: the CT reference system's plain CNN.

Four blocks of Conv2D(3x3, same) -> BatchNorm -> ReLU -> MaxPool(2x2) with 32, 64, 128, 256
filters, then Dropout, an adaptive max pool to 4x4 (so any input side divisible by 16 works;
default 256 px), Flatten, Dense(128, ReLU), Dropout, and the output layer (1 logit binary,
C logits softmax).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from lungcad.models.registry import register_model


def _block(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict(conv=nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
                                     bn=nn.BatchNorm2d(out_ch), relu=nn.ReLU(inplace=True),
                                     pool=nn.MaxPool2d(2)))


class CtCnn(nn.Module):
    def __init__(self, num_outputs: int = 1, in_channels: int = 1, dense: int = 128,
                 dropout: float = 0.5, pooled_side: int = 4):
        super().__init__()
        filters = [in_channels, 32, 64, 128, 256]
        self.features = nn.Sequential(OrderedDict(
            (f"block{i + 1}", _block(filters[i], filters[i + 1])) for i in range(4)))
        self.classifier = nn.Sequential(OrderedDict(
            drop1=nn.Dropout(dropout / 2), pool=nn.AdaptiveMaxPool2d(pooled_side),
            flatten=nn.Flatten(), dense=nn.Linear(256 * pooled_side ** 2, dense),
            relu=nn.ReLU(inplace=True), drop2=nn.Dropout(dropout),
            out=nn.Linear(dense, num_outputs)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model(
    "ct-cnn", input_size=256, in_channels=1, target_layer="features.block4.conv",
    description="CT reference CNN: 4 conv/BN/ReLU/max-pool blocks, dropout, flatten, dense",
    mean=0.5, std=0.25, size_multiple=16)
def ct_cnn(num_outputs: int = 1, in_channels: int = 1, **kwargs) -> CtCnn:
    return CtCnn(num_outputs=num_outputs, in_channels=in_channels, **kwargs)
