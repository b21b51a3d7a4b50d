"""The Lightning trainer's config: every key with its default, and the checks
(configs/README.md documents every key)."""

from __future__ import annotations

import copy
from typing import Any

from lungcad.errors import LungcadError
from lungcad.training.config_io import REQUIRED_HINTS

MONITORS = {"val_acc": "max", "val_auroc": "max", "val_loss": "min"}
CLASS_BALANCE = ("weighted_loss", "sampler", "none")
OPTIMIZERS = ("adam", "adamw", "sgd")
PRECISIONS = ("auto", "32-true", "32", "16-mixed", "bf16-mixed")

DEFAULT_AUGMENT: dict[str, Any] = {
    "enabled": True,
    "rotation": 5.0,          # degrees, uniform in [-r, r]
    "shear": 3.0,             # degrees
    "scale": [0.95, 1.05],
    "translate": 0.03,        # fraction of the side
    "brightness": 0.1,        # multiply by a factor in [1-b, 1+b]
    "contrast": 0.1,
    "hflip": False,           # anatomy is not left-right symmetric (heart, aortic arch)
}

DEFAULTS: dict[str, Any] = {
    "trainer": "lightning",
    "name": None,
    "model": None,
    "model_args": {},
    "dataset": None,
    "task": None,
    "split": None,
    "fold": 0,
    "image_size": None,        # None: the model's default input size
    "batch_size": 16,
    "lr": 1e-4,
    "epochs": 30,
    "optimizer": "adam",
    "weight_decay": 0.0,
    "monitor": "val_auroc",
    "early_stopping_patience": None,
    "augment": DEFAULT_AUGMENT,
    "class_balance": "weighted_loss",
    "seed": 42,
    "deterministic": False,
    "threshold": "youden",
    "num_workers": 0,
    "precision": "auto",
    "accelerator": "auto",
    "devices": 1,
    "num_nodes": 1,
    "strategy": "auto",
    "torch_threads": None,
    "modality": None,
    "progress_bar": True,
}

def lightning_config(data: dict) -> dict:
    """The Lightning trainer's config: :data:`DEFAULTS` completed by ``data``, checked."""
    config = copy.deepcopy(DEFAULTS)
    if isinstance(data.get("augment"), dict):
        data = {**data, "augment": {**DEFAULT_AUGMENT, **data["augment"]}}
    config.update(data)
    return check_config(config)


def _number(config: dict, key: str, kind: type, minimum: float | None = None,
            allow_none: bool = False) -> None:
    value = config[key]
    if value is None and allow_none:
        return
    try:
        if isinstance(value, bool):
            raise ValueError
        number = kind(value)
        if kind is int and number != float(value):
            raise ValueError
    except (TypeError, ValueError):
        raise LungcadError(f"config: {key} must be {'an integer' if kind is int else 'a number'}, "
                           f"got {value!r}") from None
    if minimum is not None and number < minimum:
        raise LungcadError(f"config: {key} must be at least {minimum}, got {number}")
    config[key] = number


def _choice(config: dict, key: str, choices) -> None:
    value = str(config[key]).lower() if config[key] is not None else None
    if value not in choices:
        raise LungcadError(f"config: {key} must be one of {', '.join(choices)}, got {config[key]!r}")
    config[key] = value


def check_config(config: dict) -> dict:
    """Types and values checked; numbers written as YAML strings (``1e-4``) become numbers."""
    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        raise LungcadError(f"config: unknown key(s) {unknown}; known keys: {', '.join(DEFAULTS)}")
    for key in ("model", "dataset", "task", "split"):
        if not config.get(key):
            raise LungcadError(f"config: {key} is required: {REQUIRED_HINTS[key]}")
    for key in ("fold", "epochs", "batch_size", "seed", "num_workers", "devices",
                "num_nodes"):
        _number(config, key, int, minimum=0 if key in ("fold", "seed", "num_workers") else 1)
    _number(config, "image_size", int, minimum=32, allow_none=True)
    _number(config, "early_stopping_patience", int, minimum=1, allow_none=True)
    _number(config, "torch_threads", int, minimum=1, allow_none=True)
    _number(config, "lr", float)
    if config["lr"] <= 0:
        raise LungcadError(f"config: lr must be positive, got {config['lr']}")
    _number(config, "weight_decay", float, minimum=0.0)
    _choice(config, "monitor", MONITORS)
    _choice(config, "class_balance", CLASS_BALANCE)
    _choice(config, "optimizer", OPTIMIZERS)
    config["precision"] = str(config["precision"])
    _choice(config, "precision", PRECISIONS)
    config["deterministic"] = bool(config["deterministic"])
    config["progress_bar"] = bool(config["progress_bar"])
    if not isinstance(config["model_args"] or {}, dict):
        raise LungcadError(f"config: model_args must be a mapping, got {config['model_args']!r}")
    config["model_args"] = dict(config["model_args"] or {})
    augment = config["augment"]
    if augment in (None, False):
        augment = {"enabled": False}
    if not isinstance(augment, dict):
        raise LungcadError(f"config: augment must be a mapping (see configs/README.md), got {augment!r}")
    unknown_aug = sorted(set(augment) - set(DEFAULT_AUGMENT))
    if unknown_aug:
        raise LungcadError(f"config: unknown augment key(s) {unknown_aug}; known: {', '.join(DEFAULT_AUGMENT)}")
    config["augment"] = {**DEFAULT_AUGMENT, **augment}
    for key in ("dataset", "split"):
        config[key] = str(config[key])
    return config


