"""Every architecture registered by name: ``create_model(name, ...)`` is the only door.

Models take (N, channels, H, W) float tensors and return logits: shape (N, 1) for a binary task
(sigmoid) and (N, C) for C > 2 classes (softmax). ``logits_to_probs`` turns either into (N, C).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from lungcad.errors import LungcadError


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


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(name: str, **info) -> Callable:
    def wrap(builder: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"model {name} registered twice")
        _REGISTRY[name] = ModelInfo(name=name, builder=builder, **info)
        return builder
    return wrap


def _ensure_loaded() -> None:
    import lungcad.models  # noqa: F401  (importing the package registers every architecture)


def list_models() -> list[ModelInfo]:
    _ensure_loaded()
    return list(_REGISTRY.values())


def model_info(name: str) -> ModelInfo:
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise LungcadError(f"unknown model {name!r}; registered models: {', '.join(_REGISTRY)}") from None


def create_model(name: str, num_classes: int, **kwargs):
    """Build a registered architecture for ``num_classes`` classes (2 means one sigmoid logit)."""
    info = model_info(name)
    if num_classes < 2:
        raise LungcadError(f"a model needs at least 2 classes, got {num_classes}")
    num_outputs = 1 if num_classes == 2 else num_classes
    arguments = {**info.defaults, **kwargs}
    try:
        return info.builder(num_outputs=num_outputs, **arguments)
    except TypeError as exc:
        unknown = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
        if unknown is None:
            raise
        raise LungcadError(f"model {name} does not take the argument {unknown.group(1)!r} "
                           "(check model_args in the config)") from None


def logits_to_probs(logits):
    import torch

    if logits.shape[1] == 1:
        p = torch.sigmoid(logits)
        return torch.cat([1 - p, p], dim=1)
    return torch.softmax(logits, dim=1)
