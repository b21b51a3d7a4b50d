"""Architectures. Importing this package registers every model; :func:`create_model` is the
only door to them (:mod:`lungcad.models.registry` holds the registry the builders write to)."""

from __future__ import annotations

import re

from lungcad.errors import LungcadError

# Each import registers its architecture(s) by name.
from lungcad.models import (ct_cnn, efficientnet_lite, lung_unet, nodule_heatmap,  # noqa: F401
                            nodule_two_stage, paper_cnn_lstm, vgg16_lstm)
from lungcad.models.registry import ModelInfo, logits_to_probs, registered

__all__ = ["ModelInfo", "create_model", "list_models", "loading_args", "logits_to_probs",
           "model_info", "registered_kind"]


def list_models(kind: str | None = None) -> list[ModelInfo]:
    """Every registered architecture, or those of one ``kind`` (classifier, segmenter,
    detector)."""
    return [m for m in registered().values() if kind is None or m.kind == kind]


def registered_kind(name: str) -> str | None:
    """The ``kind`` of a registered architecture, None for a name not registered."""
    info = registered().get(name)
    return None if info is None else info.kind


def model_info(name: str) -> ModelInfo:
    models = registered()
    if name not in models:
        raise LungcadError(f"unknown model {name!r}; registered models: {', '.join(models)}")
    return models[name]


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


def loading_args(name: str, model_args: dict) -> dict:
    """``model_args`` as a model directory stores them: its weights come from weights.pt, so
    nothing pretrained is fetched and no weights file is named."""
    args = {k: v for k, v in model_args.items() if k not in ("weights_path", "weights_sha256")}
    if "pretrained" in model_info(name).defaults or "pretrained" in args:
        args["pretrained"] = False
    return args
