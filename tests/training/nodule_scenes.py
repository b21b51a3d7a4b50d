"""Small JSRT-like datasets for the nodule trainers' tests (noise, bright discs as nodules,
two elliptical lungs)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

SIDE = 128   # a 128 px JSRT-like frame: 2.8 mm per pixel


def jsrt_like(root, n: int = 9) -> list[str]:
    """Noise with a bright 20 mm disc on the nodule images; labels malignant / benign / none."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(n):
        label = ("malignant", "benign", "non_nodule")[i % 3]
        image = rng.normal(0.4, 0.03, (SIDE, SIDE))
        x, y = rng.uniform(40, 88, 2)
        if label != "non_nodule":
            yy, xx = np.mgrid[:SIDE, :SIDE]
            image[(xx - x) ** 2 + (yy - y) ** 2 < 3.5 ** 2] += 0.2
        name = f"images/{i:03d}.png"
        Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).save(root / name)
        has = label != "non_nodule"
        rows.append({"path": name, "label": label, "x_512": x * 4 if has else np.nan,
                     "y_512": y * 4 if has else np.nan, "size_mm": 20.0 if has else np.nan})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    return [r["path"] for r in rows]


def lungs(side: int = SIDE) -> np.ndarray:
    rows, cols = np.indices((side, side)) / side
    return ((((cols - 0.3) / 0.18) ** 2 + ((rows - 0.5) / 0.38) ** 2 <= 1)
            | (((cols - 0.7) / 0.18) ** 2 + ((rows - 0.5) / 0.38) ** 2 <= 1))


def spy_on_training_images(monkeypatch) -> list[str]:
    """Make the trainers' training-image loaders record every path they read (the list
    returned) and give the two elliptical lungs as every image's lung mask."""
    from lungcad.training import synthetic_nodules

    read: list[str] = []
    real_loaders = synthetic_nodules.training_image_loaders

    def spied(manifest, size):
        image, _ = real_loaders(manifest, size)
        return (lambda p: read.append(p) or image(p)), (lambda p: read.append(p) or lungs(size))

    monkeypatch.setattr(synthetic_nodules, "training_image_loaders", spied)
    return read
