"""Synthetic datasets for training tests: small PNGs in tmp_path, a labels.csv and a split file,
and a tiny Lightning config."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image


def make_dataset(root: Path, n: int = 24, size: int = 48, seed: int = 0, n_folds: int = 2) -> tuple[Path, Path]:
    """``n`` images labelled like JSRT (malignant / benign / non_nodule) and a split file.

    Malignant images carry a bright disc, so a network can learn the task in a few epochs.
    Returns (dataset folder, split JSON path).
    """
    rng = np.random.default_rng(seed)
    images = root / "images"
    images.mkdir(parents=True)
    labels = (["malignant", "benign", "non_nodule"] * n)[:n]
    rows = []
    yy, xx = np.mgrid[:size, :size]
    for i, label in enumerate(labels):
        pixels = rng.normal(0.4, 0.08, (size, size)) + 0.2 * (yy / size)
        if label == "malignant":
            cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
            pixels[(yy - cy) ** 2 + (xx - cx) ** 2 < (size / 8) ** 2] += 0.35
        name = f"images/case{i:03d}.png"
        Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(root / name)
        rows.append(f"{name},{label}")
    (root / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    manifest_sha = hashlib.sha256((root / "labels.csv").read_bytes()).hexdigest()
    paths = [r.split(",")[0] for r in rows]
    folds = []
    for k in range(n_folds):
        test = paths[k::n_folds * 3]
        rest = [p for p in paths if p not in test]
        val = rest[::4]
        train = [p for p in rest if p not in val]
        folds.append({"fold": k, "train": train, "val": val, "test": test})
    split = {"format": "lungcad-split/1", "dataset": root.name, "manifest_sha256": manifest_sha,
             "task": "jsrt-malignant", "seed": seed, "n_folds": n_folds, "val_fraction": 0.25,
             "grouping": {"method": "one image per group (synthetic)"},
             "groups": {p: i for i, p in enumerate(paths)}, "folds": folds}
    split_path = root.parent / f"{root.name}-split.json"
    split_path.write_text(json.dumps(split, indent=1))
    return root, split_path


def tiny_config(dataset: Path, split: Path, **extra) -> dict:
    from lungcad.training.config import load_config

    overrides = {"model": "paper-cnn-lstm", "dataset": str(dataset), "split": str(split),
                 "task": "jsrt-malignant", "image_size": 32, "batch_size": 8, "epochs": 2,
                 "lr": 1e-3, "progress_bar": False, "threshold": "youden", **extra}
    return load_config(None, [f"{k}={v}" for k, v in overrides.items()])
