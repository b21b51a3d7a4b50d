"""Config files in general: YAML read with clear errors, ``key=value`` overrides, paths resolved,
and what may change when an interrupted run resumes. Relative paths in a config file
(``dataset``, ``split``, a weights file in ``model_args``) resolve against the folder of the
config file; relative paths given as overrides resolve against the current directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from lungcad.errors import LungcadError

REQUIRED_HINTS = {"split": "a split JSON made by `lungcad data split`",
                  "dataset": "a dataset folder with labels.csv (or pass --data)",
                  "model": "a registered architecture (see `lungcad models`)",
                  "task": "a task name such as jsrt-malignant"}

PATH_KEYS = ("dataset", "split")
EXPERIMENT_ONLY_KEYS = ("localisation",)
WEIGHT_FILE_ARGS = ("pretrained", "weights_path")
NOT_PATHS = {"imagenet", "none", "true", "false", ""}
# Keys that may change between an interrupted run and its resumption.
RESUMABLE_CHANGES = {"epochs", "num_workers", "devices", "num_nodes", "strategy", "accelerator",
                     "torch_threads", "progress_bar", "early_stopping_patience", "precision"}


def _resolve(value: Any, base: Path) -> Any:
    if value is None or (isinstance(value, str) and value.strip().lower() in NOT_PATHS):
        return value
    if not isinstance(value, (str, Path)):
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def resolve_paths(config: dict, base: Path, keys: set[str] | None = None) -> None:
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


def dump_config(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=None)


def config_differences(old: dict, new: dict) -> list[str]:
    """Keys whose values differ, ignoring those a resumed run may change."""
    keys = (set(old) | set(new)) - RESUMABLE_CHANGES
    return sorted(k for k in keys if old.get(k) != new.get(k))
