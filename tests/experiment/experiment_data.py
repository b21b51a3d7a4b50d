"""A synthetic JSRT-like dataset with a grouped 3-fold split, and a tiny experiment config."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image

LABELS = ("malignant", "benign", "non_nodule")


def make_dataset(root: Path, n: int = 30, size: int = 48, n_folds: int = 3,
                 seed: int = 0) -> tuple[Path, Path]:
    """``n`` images; malignant ones carry a bright disc at a recorded position (x_512, y_512 in
    a 512 px frame, size_mm), so a model can learn and localisation can be scored. The split
    holds every image in exactly one test part; val and train partition the rest."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    yy, xx = np.mgrid[:size, :size]
    lines = ["path,label,subtlety,size_mm,sex,x_512,y_512"]
    paths = []
    for i in range(n):
        label = LABELS[i % 3]
        pixels = rng.normal(0.4, 0.08, (size, size)) + 0.2 * (yy / size)
        coords = ["", "", ""]
        if label != "non_nodule":
            cy, cx = (int(v) for v in rng.integers(size // 4, 3 * size // 4, 2))
            if label == "malignant":
                pixels[(yy - cy) ** 2 + (xx - cx) ** 2 < (size / 8) ** 2] += 0.35
            scale = 512 / size
            coords = [f"{size / 4 * scale * 0.7:.1f}", f"{(cx + 0.5) * scale:.1f}",
                      f"{(cy + 0.5) * scale:.1f}"]
        rel = f"images/case{i:03d}.png"
        Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(root / rel)
        subtlety = str(i % 5 + 1) if label != "non_nodule" else ""
        lines.append(",".join([rel, label, subtlety, coords[0], "MF"[i % 2], coords[1], coords[2]]))
        paths.append(rel)
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    folds = []
    for k in range(n_folds):
        test = [p for i, p in enumerate(paths) if (i // 3) % n_folds == k]  # every label
        rest = [p for p in paths if p not in test]
        val = rest[::5]
        folds.append({"fold": k, "train": [p for p in rest if p not in val], "val": val,
                      "test": test})
    split = {"format": "lungcad-split/1", "dataset": root.name,
             "manifest_sha256": hashlib.sha256((root / "labels.csv").read_bytes()).hexdigest(),
             "task": "jsrt-malignant", "seed": seed, "n_folds": n_folds, "val_fraction": 0.2,
             "grouping": {"method": "one image per group (synthetic)"},
             "groups": {p: i for i, p in enumerate(paths)}, "folds": folds}
    split_path = root.parent / f"{root.name}-split.json"
    split_path.write_text(json.dumps(split, indent=1))
    return root, split_path


def write_config(path: Path, dataset: Path, split: Path, **extra) -> Path:
    """A tiny paper-cnn-lstm config (32 px, 1 epoch) with relative dataset and split paths."""
    import os

    base = path.parent
    keys = {"model": "paper-cnn-lstm", "dataset": os.path.relpath(dataset, base),
            "split": os.path.relpath(split, base), "task": "jsrt-malignant", "image_size": 32,
            "batch_size": 8, "epochs": 1, "lr": 1e-3, "threshold": "youden",
            "progress_bar": False, "augment": False, **extra}
    base.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in keys.items()))
    return path
