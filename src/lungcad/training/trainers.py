"""The built-in trainers, registered by importing their modules, and the lookups."""

from __future__ import annotations

import importlib

from lungcad.errors import LungcadError
from lungcad.training import (ct_finetune, lightning_trainer, linear_probe,  # noqa: F401
                              nodule_heatmap, segmentation, two_stage)
from lungcad.training.registry import TrainerInfo, registered

DEFAULT_TRAINER = "lightning"


def list_trainers() -> list[TrainerInfo]:
    return list(registered().values())


def get_trainer(name: str | None) -> TrainerInfo:
    """The trainer registered as ``name`` (``package.module:name`` imports that module first)."""
    name = str(name or DEFAULT_TRAINER)
    module_name, _, short = name.rpartition(":")
    if module_name:
        try:
            importlib.import_module(module_name)
        except ImportError as exc:
            if exc.name and module_name.startswith(exc.name):
                raise LungcadError(f"config: trainer {name!r}: no module {module_name}") from None
            raise
    trainers = registered()
    found = trainers.get(short) or trainers.get(short.replace("-", "_"))
    if found is None:
        raise LungcadError(f"config: unknown trainer {name!r}; registered trainers: "
                           f"{', '.join(sorted(trainers))} (or package.module:name for a "
                           "module that registers one)")
    return found
