"""Synthetic inputs for the predict tests: a JSRT-like dataset folder with metadata, a split
file for it, and a small untrained model directory (random weights: the plumbing is tested,
not the accuracy)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image

LABELS = ("malignant", "benign", "non_nodule")


def make_image(path: Path, size: int = 48, seed: int = 0, disc: bool = False) -> Path:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    pixels = rng.normal(0.4, 0.08, (size, size)) + 0.2 * (yy / size)
    if disc:
        pixels[(yy - size // 2) ** 2 + (xx - size // 3) ** 2 < (size / 8) ** 2] += 0.35
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(path)
    return path


def make_dataset(root: Path, n: int = 12, size: int = 48, extra_labels: tuple[str, ...] = (),
                 n_folds: int = 2) -> tuple[Path, Path]:
    """``n`` labelled images (JSRT labels and metadata columns), plus one image per label in
    ``extra_labels``; and a split file (JSON) for it. Returns (dataset folder, split path)."""
    labels = [LABELS[i % 3] for i in range(n)] + list(extra_labels)
    lines = ["path,label,subtlety,size_mm,sex,x_512,y_512"]
    for i, label in enumerate(labels):
        rel = f"images/case{i:03d}.png"
        make_image(root / rel, size, seed=i, disc=label == "malignant")
        nodule = label in ("malignant", "benign")
        lines.append(f"{rel},{label},{(i % 5) + 1 if nodule else ''},{10 + i if nodule else ''},"
                     f"{'F' if i % 2 else 'M'},{170 if nodule else ''},{256 if nodule else ''}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    paths = [f"images/case{i:03d}.png" for i in range(len(labels))]
    folds = []
    for k in range(n_folds):
        test = paths[k::n_folds]
        rest = [p for p in paths if p not in test]
        folds.append({"fold": k, "train": rest[1:], "val": rest[:1], "test": test})
    split = {"format": "lungcad-split/1", "dataset": root.name,
             "manifest_sha256": hashlib.sha256((root / "labels.csv").read_bytes()).hexdigest(),
             "task": "jsrt-malignant", "seed": 0, "n_folds": n_folds, "val_fraction": 0.1,
             "grouping": {"method": "one image per group (synthetic)"},
             "groups": {p: i for i, p in enumerate(paths)}, "folds": folds}
    split_path = root.parent / f"{root.name}-split.json"
    split_path.write_text(json.dumps(split, indent=1))
    return root, split_path


def make_model_dir(directory: Path, task: str = "jsrt-malignant",
                   classes: tuple[str, ...] = ("rest", "malignant"), threshold: float | None = 0.4,
                   seed: int = 0) -> Path:
    import torch

    from lungcad.model_dir import ModelSpec, save_model_dir
    from lungcad.models import create_model
    from lungcad.preprocess import Preprocessing

    torch.manual_seed(seed)
    network = create_model("ct-cnn", num_classes=len(classes))
    spec = ModelSpec(name="tiny-ct", architecture="ct-cnn", task=task, classes=list(classes),
                     preprocessing=Preprocessing(size=32, channels=1, mean=0.5, std=0.25),
                     threshold=threshold, threshold_rule="test value", version="3")
    return save_model_dir(directory, network, spec)
