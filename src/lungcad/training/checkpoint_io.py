"""Checkpoints written atomically and read with ``weights_only=True``."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import CheckpointIO

from lungcad.atomic import atomic_write
from lungcad.errors import LungcadError


def load_checkpoint_file(path: str | Path, map_location: Any = "cpu") -> dict:
    """A Lightning checkpoint read with ``weights_only=True`` (no code runs while loading)."""
    path = Path(path)
    if not path.is_file():
        raise LungcadError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged file is reported, not raised raw
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LungcadError(f"{path}: cannot load the checkpoint ({first}); delete it to start "
                           "that run again") from None


class AtomicCheckpointIO(CheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any = None) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write(Path(path), buffer.getvalue())

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict:
        return load_checkpoint_file(path, map_location if map_location is not None else "cpu")

    def remove_checkpoint(self, path) -> None:
        Path(path).unlink(missing_ok=True)
