"""Networks whose Grad-CAM is known exactly (see test_explain_saliency.py's docstring)."""

from __future__ import annotations

import numpy as np

from lungcad.api import Model
from lungcad.lung_model import LungModel

from lungcad.model_dir import ModelSpec
from lungcad.preprocess import Preprocessing

SIZE = 64  # model input side


def region_network(masks: np.ndarray):
    """Logit k = mean of the identity 'feature' over region masks[k] (each SIZE x SIZE)."""
    import torch
    from torch import nn

    class Regions(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("masks", torch.from_numpy(masks.astype(np.float32)))

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return image[:, :1] * self.masks[None]

    class RegionNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.identity = nn.Conv2d(1, 1, 1, bias=False)
            nn.init.ones_(self.identity.weight)
            self.regions = Regions()
            self.relu = nn.ReLU(inplace=True)
            self.dropout = nn.Dropout(0.9)   # must be off during saliency

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            features = self.dropout(self.relu(self.regions(self.identity(x))))
            return features.sum((2, 3)) / self.regions.masks.sum((1, 2))

    return RegionNet()


def make_model(masks: np.ndarray, classes: list[str]) -> LungModel:
    spec = ModelSpec(name="region", architecture="test-region-net", task="synthetic",
                     classes=classes, preprocessing=Preprocessing(size=SIZE, mean=0.0, std=1.0))
    return Model(LungModel(spec, region_network(masks)))  # the Python API's model
