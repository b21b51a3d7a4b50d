"""Trainer ``segmentation``: a registered segmenter (``lung-unet``) trained on image/mask pairs.

A registered trainer (:mod:`lungcad.training.registry`) for segmentation tasks (``jsrt-lungs``:
the manifest's ``mask_path`` images). Images and masks are read once through the preprocessing
cache at ``image_size``; every epoch sees them through a random affine (the same for image and
mask) and an intensity jitter. Loss: MONAI's ``DiceCELoss``; Adam with a cosine learning rate.
Every setting is fixed beforehand and the last epoch is kept: nothing is picked on the
validation part, which is only scored (Dice per image, in model.json and val_predictions.csv),
so the same recipe can train a final model on every image.

Settings (config keys): ``model`` (lung-unet), ``model_args``, ``image_size`` (256), ``epochs``
(40), ``batch_size`` (8), ``lr`` (3e-3), ``weight_decay`` (1e-5), ``augment`` (true),
``rotation`` (8 degrees), ``scale`` (0.1), ``translate`` (0.05), ``seed`` (0),
``torch_threads`` (2).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from lungcad.errors import LungcadError
from lungcad.training.registry import TrainedFold, register_trainer

DEFAULTS: dict = {
    "model": "lung-unet",
    "model_args": {},
    "image_size": 256,
    "epochs": 40,
    "batch_size": 8,
    "lr": 3.0e-3,
    "weight_decay": 1.0e-5,
    "augment": True,
    "rotation": 8.0,
    "scale": 0.1,
    "translate": 0.05,
    "seed": 0,
    "torch_threads": 2,
    "threshold": "0.5",
}


def load_pairs(manifest, paths: Sequence[str], mask_column: str,
               size: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, size, size) in [0, 1] and boolean masks (N, size, size), resized (cached)."""
    from lungcad.data.cache import load_resized

    rows = manifest.rows_for(list(paths))
    if mask_column not in rows.columns or rows[mask_column].isna().any():
        raise LungcadError(f"segmentation needs a mask for every image: the manifest's "
                           f"{mask_column!r} column is missing or empty for some rows")
    images = np.stack([load_resized(manifest.image_path(p), size) for p in rows["path"]])
    masks = np.stack([load_resized(manifest.image_path(m), size) > 0.5
                      for m in rows[mask_column]])
    return images.astype(np.float32), masks


def _augment(images, masks, generator, cfg: dict):
    """The same random affine for each image and its mask, then gamma and contrast jitter."""
    import math

    import torch
    import torch.nn.functional as F

    n = images.shape[0]

    def uniform(low, high):
        return low + (high - low) * torch.rand(n, generator=generator)

    angle = uniform(-1, 1) * math.radians(float(cfg["rotation"]))
    scale = 1 + uniform(-1, 1) * float(cfg["scale"])
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * float(cfg["translate"]) * 2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1),
                         torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="border",
                           align_corners=False)
    masks = (F.grid_sample(masks, grid, mode="bilinear", padding_mode="zeros",
                           align_corners=False) > 0.5).float()
    gamma = torch.exp(uniform(-1, 1) * 0.25).view(n, 1, 1, 1)
    contrast = uniform(0.9, 1.1).view(n, 1, 1, 1)
    images = ((images.clamp(0, 1) ** gamma - 0.5) * contrast + 0.5).clamp(0, 1)
    return images, masks


def train_segmenter(network, images: np.ndarray, masks: np.ndarray, cfg: dict, mean: float,
                    std: float, log=print) -> None:
    """Fit ``network`` to the image/mask pairs (epochs, batch, lr as ``cfg`` says)."""
    import torch
    from monai.losses import DiceCELoss

    generator = torch.Generator().manual_seed(int(cfg["seed"]))
    x_all = torch.from_numpy(images[:, None])
    y_all = torch.from_numpy(masks[:, None].astype(np.float32))
    loss_fn = DiceCELoss(sigmoid=True)
    optimiser = torch.optim.Adam(network.parameters(), lr=float(cfg["lr"]),
                                 weight_decay=float(cfg["weight_decay"]))
    epochs, batch = int(cfg["epochs"]), int(cfg["batch_size"])
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(1, epochs))
    started = time.time()
    for epoch in range(epochs):
        network.train()
        order = torch.randperm(len(x_all), generator=generator)
        total = 0.0
        for start in range(0, len(order), batch):
            idx = order[start:start + batch]
            x, y = x_all[idx], y_all[idx]
            if cfg["augment"]:
                x, y = _augment(x, y, generator, cfg)
            optimiser.zero_grad()
            loss = loss_fn(network((x - mean) / std), y)
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(idx)
        schedule.step()
        if epoch % 5 == 0 or epoch == epochs - 1:
            log(f"epoch {epoch}: loss {total / len(order):.4f} ({time.time() - started:.0f} s)")
    network.eval()


def dice_scores(network, images: np.ndarray, masks: np.ndarray, mean: float,
                std: float) -> np.ndarray:
    """Dice of the thresholded prediction per image, at the training size."""
    import torch

    from lungcad.segmentation.masks import PIXEL_THRESHOLD

    out = []
    with torch.inference_mode():
        for start in range(0, len(images), 16):
            x = torch.from_numpy((images[start:start + 16, None] - mean) / std)
            pred = (torch.sigmoid(network(x))[:, 0] >= PIXEL_THRESHOLD).numpy()
            ref = masks[start:start + 16]
            inter = (pred & ref).sum(axis=(1, 2))
            out.append(2 * inter / np.maximum(pred.sum(axis=(1, 2)) + ref.sum(axis=(1, 2)), 1))
    return np.concatenate(out) if out else np.zeros(0)


@register_trainer("segmentation", defaults=DEFAULTS,
                  description="a registered segmenter (lung-unet) on image/mask pairs, MONAI "
                              "DiceCELoss, fixed epochs (nothing picked on validation)")
def fit(view, out_dir: str | Path, config: Mapping | None = None, *, resume: bool = True,
        log=print):
    """Train on ``view``'s training part; score its validation part (Dice per image)."""
    import pandas as pd
    import torch

    from lungcad.model_dir import ModelSpec
    from lungcad.models import create_model, loading_args, model_info
    from lungcad.preprocess import Preprocessing

    cfg = {**DEFAULTS, **dict(config or {})}
    task = view.task
    if not task.segmentation:
        raise LungcadError(f"the segmentation trainer trains segmentation tasks (jsrt-lungs), "
                           f"not {task.name}")
    info = model_info(str(cfg["model"]))
    if info.kind != "segmenter":
        raise LungcadError(f"the segmentation trainer needs a segmenter, and {info.name} is a "
                           f"{info.kind} (see `lungcad models`)")
    size = int(cfg["image_size"])
    if size % info.size_multiple:
        raise LungcadError(f"image_size {size} does not suit {info.name}: use a multiple of "
                           f"{info.size_multiple}")
    torch.set_num_threads(int(cfg["torch_threads"]))
    torch.manual_seed(int(cfg["seed"]))
    network = create_model(info.name, len(task.classes), **dict(cfg["model_args"] or {}))
    images, masks = load_pairs(view.manifest, view.train, task.mask_column, size)
    log(f"segmentation: {len(images)} training images at {size} px")
    train_segmenter(network, images, masks, cfg, info.mean, info.std, log)
    val_images, val_masks = load_pairs(view.manifest, view.val, task.mask_column, size)
    dice = dice_scores(network, val_images, val_masks, info.mean, info.std)
    spec = ModelSpec(name=cfg.get("name") or f"{task.name}-{info.name}", architecture=info.name,
                     task=task.name, classes=list(task.classes),
                     preprocessing=Preprocessing(size, 1, info.mean, info.std),
                     architecture_args=loading_args(info.name, dict(cfg["model_args"] or {})),
                     modality="chest radiograph",
                     metrics={"n_train": len(images), "n_val": len(val_images),
                              "val_dice_mean": float(dice.mean()) if len(dice) else None})

    def card(final) -> str:
        return (f"# {final.name}\n\nResearch software, not a medical device. Not for "
                f"diagnosis.\n\n- Architecture: `{info.name}` ({size} px), "
                f"{sum(p.numel() for p in network.parameters()):,} parameters: a lung-field "
                f"mask per pixel (probability >= 0.5)\n- Trained on {len(images)} images of "
                f"`{view.manifest.root}` with their lung masks; validation Dice (at {size} px) "
                f"{final.metrics.get('val_dice_mean') or float('nan'):.3f} on "
                f"{len(val_images)} images\n")

    table = pd.DataFrame({"path": list(view.val), "dice": dice})
    return TrainedFold(network.eval(), spec, card, None, val_table=table)
