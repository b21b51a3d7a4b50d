"""Training configs: a YAML file (or mapping) with ``key=value`` overrides, completed and checked
by the trainer it names (``trainer:``, default ``lightning``). configs/README.md documents every
key."""

from __future__ import annotations

import copy
from pathlib import Path

from lungcad.errors import LungcadError
from lungcad.training.config_io import (EXPERIMENT_ONLY_KEYS, REQUIRED_HINTS, apply_overrides,
                                        read_yaml, resolve_paths)

def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """The config at ``path`` (None: defaults only) with ``overrides`` applied, checked by its
    trainer (``trainer:``, default ``lightning``; see :mod:`lungcad.training.registry`).

    Returns a plain dict (YAML types only) with every key the trainer knows; paths absolute.
    Experiment-only keys (``localisation``) are left out: :mod:`lungcad.experiment.config`
    reads them.
    """
    if path is None:
        return config_from_mapping({}, Path.cwd(), overrides)
    path = Path(path)
    return config_from_mapping(read_yaml(path), path.resolve().parent, overrides, source=path)


def config_from_mapping(data: dict, base: Path, overrides: list[str] | tuple[str, ...] = (),
                        source: Path | None = None) -> dict:
    """A config from a mapping whose relative paths resolve against ``base`` (overrides:
    against the current folder), completed and checked by its trainer."""
    from lungcad.training.trainers import get_trainer

    data = copy.deepcopy(data)
    for key in EXPERIMENT_ONLY_KEYS:
        data.pop(key, None)
    resolve_paths(data, base)
    changed = apply_overrides(data, list(overrides))
    resolve_paths(data, Path.cwd(), changed)
    data["trainer"] = str(data.get("trainer") or "lightning")
    trainer = get_trainer(data["trainer"])
    try:
        config = trainer.complete_config(data)
    except LungcadError as exc:
        if source is None:
            raise
        raise LungcadError(f"{source}: {str(exc).removeprefix('config: ')}") from None
    for key in ("dataset", "split", "task"):
        if not config.get(key):
            raise LungcadError(f"config: {key} is required (trainer {trainer.name}): "
                               + REQUIRED_HINTS[key])
    config.setdefault("fold", 0)
    config["threshold"] = str(config.get("threshold") or "youden")
    from lungcad.evaluation.thresholds import parse_threshold_rule

    parse_threshold_rule(config["threshold"])  # raises a clear error for an unknown rule
    return config


