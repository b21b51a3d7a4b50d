"""Training configs: YAML files with defaults, ``key=value`` overrides and checked types.

Relative paths in a config file (``dataset``, ``split``, a weights file in ``model_args``)
resolve against the folder of the config file; relative paths given as overrides resolve
against the current directory. configs/README.md documents every key.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from lungcad.errors import LungcadError

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
    "strategy": "auto",
    "torch_threads": None,
    "modality": None,
    "progress_bar": True,
}

PATH_KEYS = ("dataset", "split")
EXPERIMENT_ONLY_KEYS = ("localisation",)
WEIGHT_FILE_ARGS = ("pretrained", "weights_path")
NOT_PATHS = {"imagenet", "none", "true", "false", ""}
# Keys that may change between an interrupted run and its resumption.
RESUMABLE_CHANGES = {"epochs", "num_workers", "devices", "strategy", "accelerator",
                     "torch_threads", "progress_bar", "early_stopping_patience", "precision"}


def _resolve(value: Any, base: Path) -> Any:
    if value is None or (isinstance(value, str) and value.strip().lower() in NOT_PATHS):
        return value
    if not isinstance(value, (str, Path)):
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _resolve_paths(config: dict, base: Path, keys: set[str] | None = None) -> None:
    for key in PATH_KEYS:
        if key in config and (keys is None or key in keys):
            config[key] = _resolve(config[key], base)
    args = config.get("model_args") or {}
    for key in WEIGHT_FILE_ARGS:
        if key in args and (keys is None or f"model_args.{key}" in keys):
            args[key] = _resolve(args[key], base)


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise LungcadError(f"--set {text!r}: expected key=value, e.g. --set lr=3e-4")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise LungcadError(f"--set {text!r}: the key is empty")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(config: dict, overrides: list[str]) -> set[str]:
    """Apply ``key=value`` (dotted keys reach into dicts); return the keys that were set."""
    changed = set()
    for text in overrides:
        parts, value = parse_override(text)
        target = config
        for part in parts[:-1]:
            if not isinstance(target.get(part), dict):
                target[part] = {}
            target = target[part]
        target[parts[-1]] = value
        changed.add(".".join(parts))
    return changed


def read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise LungcadError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise LungcadError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise LungcadError(f"{path}: a config is a mapping of keys to values, got {type(data).__name__}")
    return data


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """The config at ``path`` (None: defaults only) with ``overrides`` applied, checked.

    Returns a plain dict (YAML types only) with every key of :data:`DEFAULTS`; paths absolute.
    """
    config = copy.deepcopy(DEFAULTS)
    if path is not None:
        path = Path(path)
        data = read_yaml(path)
        trainer = str(data.pop("trainer", None) or "lightning")
        if trainer != "lightning":
            raise LungcadError(f"{path} is a config for the {trainer!r} trainer, which "
                               "`lungcad experiment` runs; `lungcad train` runs Lightning configs")
        for key in EXPERIMENT_ONLY_KEYS:  # read by `lungcad experiment`, not by training
            data.pop(key, None)
        unknown = sorted(set(data) - set(DEFAULTS))
        if unknown:
            raise LungcadError(f"{path}: unknown key(s) {unknown}; known keys: {', '.join(DEFAULTS)} "
                               "(see configs/README.md)")
        _resolve_paths(data, path.resolve().parent)
        if isinstance(data.get("augment"), dict):
            data["augment"] = {**DEFAULT_AUGMENT, **data["augment"]}
        config.update(data)
    changed = apply_overrides(config, list(overrides))
    _resolve_paths(config, Path.cwd(), changed)
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
            hint = {"split": "a split JSON made by `lungcad data split`",
                    "dataset": "a dataset folder with labels.csv (or pass --data)",
                    "model": "a registered architecture (see `lungcad models`)",
                    "task": "a task name such as jsrt-malignant"}[key]
            raise LungcadError(f"config: {key} is required: {hint}")
    for key in ("fold", "epochs", "batch_size", "seed", "num_workers", "devices"):
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
    config["threshold"] = str(config["threshold"])
    from lungcad.evaluation.thresholds import parse_threshold_rule

    parse_threshold_rule(config["threshold"])  # raises a clear error for an unknown rule
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


def dump_config(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=None)


def config_differences(old: dict, new: dict) -> list[str]:
    """Keys whose values differ, ignoring those a resumed run may change."""
    keys = (set(old) | set(new)) - RESUMABLE_CHANGES
    return sorted(k for k in keys if old.get(k) != new.get(k))
