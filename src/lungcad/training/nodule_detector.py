"""Trainer for ``nodule-detector-lite0``: cell targets from the dataset's lesions.

A registered trainer (:mod:`lungcad.training.registry`) for ``jsrt-nodule``, ``jsrt-malignant``
and ``lesion``. Training reads, besides the image, the dataset's lesions: its ``lesions.csv``
(any number an image, boxes or centres with diameters, each image at its own spacing;
:mod:`lungcad.training.lesion_targets`) or JSRT's nodule centre (``x_512``, ``y_512``) and
diameter (``size_mm``); prediction needs only the image.

Why it is built this way (2 shared CPU cores, about 180 training images a fold):

- the whole ImageNet EfficientNet-Lite0 is frozen, so its four feature levels are computed once
  per image and once for its mirror image (mapped back, so both describe the same cells: the
  mirror is the augmentation) and reused every epoch and in every fold; they are kept in memory
  and, as float16, on disk (:mod:`lungcad.detection.feature_cache`);
- every 8 px cell gets a target: ``nodule`` is 1 inside the nodule's disc (radius at least
  ``min_radius_mm``), ``malignant`` is the nodule's malignancy, supervised inside the disc; the
  loss adds a cell-level BCE (positives up-weighted), the malignancy BCE, and an image-level BCE
  on the max-pooled nodule logit (multiple-instance learning); every cell counts, outside the
  lungs too, so that the image score (the strongest cell) is not fooled by the label corners;
- training reads random crops of ``crop_cells`` cells a side (most holding the image's nodule),
  which costs a quarter of whole images at 32 of 64 cells;
- every setting is fixed in the config beforehand; the validation part only sets the threshold.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from lungcad.errors import LungcadError
from lungcad.training.lesion_targets import lesion_cell_targets
from lungcad.training.nodule_heatmap import TASK_OUTPUT, heatmap_loss
from lungcad.training.registry import TrainedFold, register_trainer

ARCHITECTURE = "nodule-detector-lite0"
DEFAULTS: dict = {
    "image_size": 512,
    "model_args": {"pretrained": True, "head_channels": 64},
    "epochs": 20,
    "batch_size": 16,
    "lr": 3.0e-3,
    "weight_decay": 1.0e-3,
    "pos_weight": 10.0,
    "min_radius_mm": 4.0,
    "image_loss_weight": 1.0,
    "crop_cells": 32,       # training crops of crop_cells x crop_cells cells, most holding the nodule
    "threshold": "youden",
    "seed": 0,
    "torch_threads": 2,
    "marks": {},            # lungcad.detection.marks.MarkSettings fields (peaks, spacing, lungs)
}


def _config(config: Mapping | None) -> dict:
    merged = {**DEFAULTS, **(dict(config) if config else {})}
    merged["model_args"] = {**DEFAULTS["model_args"], **dict(merged.get("model_args") or {})}
    merged["marks"] = dict(merged.get("marks") or {})
    return merged


def _output(task) -> str:
    if task.name not in TASK_OUTPUT:
        raise LungcadError(f"{ARCHITECTURE} trains only {sorted(TASK_OUTPUT)}, not {task.name}")
    return TASK_OUTPUT[task.name]


def _network(cfg: dict):
    from lungcad.training.nodule_heatmap import seeded_network

    return seeded_network(cfg, ARCHITECTURE)


def train_detector_head(network, features: np.ndarray, nodule: np.ndarray,
                        malignant: np.ndarray, config: Mapping, log=print) -> None:
    """Train the head of ``network`` on cached frozen features (N, 2, C, G, G) float16 (image
    and mirror image, both on the image's cells) and cell targets (N, G, G)."""
    import torch

    cfg = _config(config)
    rng = np.random.default_rng(int(cfg["seed"]))
    torch.manual_seed(int(cfg["seed"]))
    for p in network.frozen_parameters():
        p.requires_grad_(False)
    plain = torch.from_numpy(features[:, 0]).float()
    network.feature_mean.copy_(plain.mean(dim=(0, 2, 3)).reshape(1, -1, 1, 1))
    network.feature_std.copy_(plain.std(dim=(0, 2, 3)).reshape(1, -1, 1, 1) + 1e-3)
    del plain
    nod, mal = torch.from_numpy(nodule), torch.from_numpy(malignant)
    params = list(network.head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    n, bs, epochs = len(nodule), int(cfg["batch_size"]), int(cfg["epochs"])
    crop = min(int(cfg["crop_cells"]), nodule.shape[-1])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg["lr"],
                                                total_steps=epochs * max(1, -(-n // bs)),
                                                pct_start=0.1)
    network.head.train()
    t0 = time.time()
    for epoch in range(epochs):
        order, total = rng.permutation(n), 0.0
        for start in range(0, n, bs):
            idx = np.sort(order[start:start + bs])
            mirror = rng.random(len(idx)) < 0.5
            crops = [_crop(rng, nodule[i], crop) for i in idx]
            x = torch.from_numpy(np.stack([features[i, int(m), :, r:r + crop, c:c + crop]
                                           for i, m, (r, c) in zip(idx, mirror, crops)])).float()
            cells = network.cells_from_features(x)
            yn = torch.stack([nod[i, r:r + crop, c:c + crop] for i, (r, c) in zip(idx, crops)])
            ym = torch.stack([mal[i, r:r + crop, c:c + crop] for i, (r, c) in zip(idx, crops)])
            loss = heatmap_loss(cells, yn, ym, cfg["pos_weight"], cfg["image_loss_weight"],
                                image_malignant=False)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        if epoch % 5 == 0 or epoch == epochs - 1:
            log(f"epoch {epoch}: loss {total / n:.4f} ({time.time() - t0:.0f} s)")
    network.eval()


def _crop(rng: np.random.Generator, nodule: np.ndarray, crop: int) -> tuple[int, int]:
    """Top-left cell of a training crop; on an image with a nodule, 70% of crops hold it."""
    from lungcad.training.nodule_heatmap import crop_origin

    return crop_origin(rng, nodule, nodule.shape[-1], crop)


def cell_probabilities(network, features: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """(N, 2, G, G) sigmoid cell maps (nodule, malignant given nodule) from cached features,
    averaged over the image and its mirror image (flip test-time augmentation)."""
    import torch

    network.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(features), batch_size):
            chunk = torch.from_numpy(features[start:start + batch_size]).float()
            logits = (network.cells_from_features(chunk[:, 0])
                      + network.cells_from_features(chunk[:, 1])) / 2
            out.append(torch.sigmoid(logits).numpy())
    return np.concatenate(out) if out else np.zeros((0, 2, 1, 1), np.float32)


def image_scores(cells: np.ndarray, output: str) -> np.ndarray:
    """The image probability of ``output`` from cell maps: the strongest cell."""
    if output == "nodule":
        return cells[:, 0].reshape(len(cells), -1).max(axis=1)
    return (cells[:, 0] * cells[:, 1]).reshape(len(cells), -1).max(axis=1)


def _trained_fold(network, cfg: dict, task, manifest, n_train: int, val_scores: np.ndarray):
    from lungcad.detection.marks import MarkSettings
    from lungcad.model_dir import ModelSpec
    from lungcad.models import loading_args, model_info
    from lungcad.preprocess import Preprocessing

    output, size = _output(task), int(cfg["image_size"])
    info = model_info(ARCHITECTURE)
    network.output = output
    spec = ModelSpec(name=cfg.get("name", f"{task.name}-{ARCHITECTURE}"),
                     architecture=ARCHITECTURE, task=task.name, classes=list(task.classes),
                     preprocessing=Preprocessing(size, 1, info.mean, info.std),
                     architecture_args=loading_args(ARCHITECTURE,
                                                    {**cfg["model_args"], "output": output}),
                     modality="chest radiograph", metrics={"n_train": n_train},
                     detection={"marks": MarkSettings.from_mapping(cfg["marks"]).to_dict()})

    def card(final) -> str:
        return (f"# {final.name}\n\nResearch software, not a medical device. Not for "
                f"diagnosis.\n\n- Architecture: `{ARCHITECTURE}` ({size} px): frozen ImageNet "
                "EfficientNet-Lite0 features on 8 px cells and a small trained head; marks are "
                "the strongest local maxima of the nodule map inside the lungs\n"
                f"- Trained on {n_train} images of `{manifest.root}` with the nodule positions "
                "and sizes as cell targets; prediction uses the image only\n"
                f"- Image output `{output}`, threshold {final.threshold:.4g} "
                f"({final.threshold_rule})\n")

    probs = np.stack([1.0 - val_scores.astype(np.float64), val_scores.astype(np.float64)], 1)
    return TrainedFold(network, spec, card, probs)


def train_on(manifest, tasks: Sequence, train_paths: Sequence[str], cfg: dict, log=print):
    """A network trained on ``train_paths`` (its head; the rest is ImageNet's)."""
    from lungcad.detection.feature_cache import detector_features

    network = _network(cfg)
    rows = manifest.rows_for(list(train_paths))
    for t in tasks:
        _output(t)
        t.check_labels(rows["label"])
    size = int(cfg["image_size"])
    feats = detector_features(network, manifest, list(train_paths), size, log=log)
    grid = feats.shape[-1]
    nodule, malignant = lesion_cell_targets(manifest, list(train_paths), grid, size,
                                            stride=size // grid,
                                            min_radius_mm=float(cfg["min_radius_mm"]), log=log)
    train_detector_head(network, feats, nodule, malignant, cfg, log=log)
    return network


@register_trainer("nodule_detector", defaults=DEFAULTS,
                  description="nodule-detector-lite0: frozen multi-level ImageNet Lite0 "
                              "features on 8 px cells, a conv head trained on the JSRT nodule "
                              "positions; marks = maxima in the lungs (jsrt-nodule, "
                              "jsrt-malignant)")
def fit(view, out_dir: str | Path, config: Mapping | None = None, *, resume: bool = True,
        log=print):
    """Train ``nodule-detector-lite0`` on ``view``'s training part; score its validation part."""
    from lungcad.detection.feature_cache import detector_features

    cfg = _config(config)
    network = train_on(view.manifest, [view.task], list(view.train), cfg, log)
    val = detector_features(network, view.manifest, list(view.val), int(cfg["image_size"]),
                            log=log)
    scores = image_scores(cell_probabilities(network, val), _output(view.task))
    return _trained_fold(network, cfg, view.task, view.manifest, len(view.train), scores)
