"""The architecture registry: builders register here by name; :mod:`lungcad.models` (which
imports every builder) holds the lookups, ``create_model(name, ...)`` being the only door.

Models take (N, channels, H, W) float tensors and return logits: shape (N, 1) for a binary task
(sigmoid) and (N, C) for C > 2 classes (softmax). ``logits_to_probs`` turns either into (N, C).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable



@dataclass(frozen=True)
class ModelInfo:
    name: str
    builder: Callable
    input_size: int           # default square input side in pixels
    in_channels: int          # channels the model expects (1 for grayscale)
    target_layer: str         # default layer for saliency maps (a dotted attribute path)
    description: str
    mean: float = 0.5         # default normalisation (applied after scaling to [0, 1])
    std: float = 0.25
    size_multiple: int = 32   # input sides must be divisible by this
    defaults: dict = field(default_factory=dict)
    kind: str = "classifier"  # or "segmenter": logits (N, 1, H, W), one per pixel (a
    #                           detector is a model directory's role: model.json "detection")


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(name: str, **info) -> Callable:
    def wrap(builder: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"model {name} registered twice")
        _REGISTRY[name] = ModelInfo(name=name, builder=builder, **info)
        return builder
    return wrap


def registered() -> dict[str, ModelInfo]:
    """The architectures registered so far (import :mod:`lungcad.models` to register all)."""
    return dict(_REGISTRY)


def logits_to_probs(logits):
    import torch

    if logits.shape[1] == 1:
        p = torch.sigmoid(logits)
        return torch.cat([1 - p, p], dim=1)
    return torch.softmax(logits, dim=1)
