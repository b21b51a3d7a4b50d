"""Every trainer registered by name, as every architecture is in :mod:`lungcad.models.registry`.

A trainer turns one :class:`~lungcad.data.splits.FoldView` into a trained network::

    @register_trainer("my_trainer", defaults={...}, description="...")
    def fit(fold, out_dir, config, *, resume=True, log=print) -> TrainedFold | None: ...

It sees the fold's training and validation parts, never its test part, and hands back the
network, its :class:`~lungcad.model_dir.ModelSpec` without a threshold, a model card and the
validation probabilities, unrounded (:class:`TrainedFold`). The threshold
and the model directory are then written by :func:`lungcad.training.fit.train`, the one code path
that ``lungcad train``, ``lungcad experiment`` and ``--final`` share. A config names its trainer
with ``trainer:`` (default ``lightning``); ``trainer: package.module:name`` imports a module that
registers ``name`` (a trainer kept outside lungcad). :mod:`lungcad.training.trainers` imports
the built-in trainers and looks them up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np



@dataclass(frozen=True)
class TrainerInfo:
    name: str
    fit: Callable
    description: str
    defaults: dict = field(default_factory=dict)
    # checks and completes a config (defaults filled in); the default merges ``defaults``
    check_config: Callable[[dict], dict] | None = None
    # True where the trainer picks its checkpoint on validation images: such a recipe cannot
    # make a final model on every image (there is nothing left to validate on)
    selects_on_validation: bool = False

    def complete_config(self, config: dict) -> dict:
        if self.check_config is not None:
            return self.check_config(config)
        merged = {**self.defaults, **config}
        if isinstance(self.defaults.get("model_args"), dict):
            merged["model_args"] = {**self.defaults["model_args"],
                                    **dict(config.get("model_args") or {})}
        return merged


@dataclass
class TrainedFold:
    """What a trainer hands back: the trained network, its spec (no threshold yet), its model
    card (text, or a function of the final spec) and the validation probabilities, unrounded,
    one row per image of the fold's validation part in its order (None: predict them here).
    A segmenter has no threshold to decide: it hands back ``val_table`` instead (path and its
    scores per validation image), written as val_predictions.csv."""

    network: object
    spec: object
    card: str | Callable | None = None
    val_probs: np.ndarray | None = None
    val_table: object = None


_TRAINERS: dict[str, TrainerInfo] = {}


def register_trainer(name: str, *, description: str, defaults: dict | None = None,
                     check_config: Callable[[dict], dict] | None = None,
                     selects_on_validation: bool = False) -> Callable:
    def wrap(fit: Callable) -> Callable:
        if name in _TRAINERS and _TRAINERS[name].fit is not fit:
            raise ValueError(f"trainer {name} registered twice")
        _TRAINERS[name] = TrainerInfo(name, fit, description, dict(defaults or {}),
                                      check_config, selects_on_validation)
        return fit
    return wrap


def registered() -> dict[str, TrainerInfo]:
    """The trainers registered so far (:mod:`lungcad.training.trainers` registers the built-in
    ones)."""
    return dict(_TRAINERS)
