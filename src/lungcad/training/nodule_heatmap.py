"""Trainer for ``nodule-heatmap-lite0``: dense nodule supervision from the JSRT annotations.

A registered trainer (:mod:`lungcad.training.registry`) for ``jsrt-nodule`` and
``jsrt-malignant``. Training uses, besides the image, the manifest's nodule centre (``x_512``,
``y_512``: column and row in a 512 px image), diameter (``size_mm``, 0.7 mm per pixel at 512 px)
and label; prediction needs only the image.

Why it is built this way (2 shared CPU cores, about 180 training images a fold):

- the stem and blocks 0-7 of the ImageNet EfficientNet-Lite0 stay frozen, so their outputs are
  computed once per image (and once for its mirror image, the only augmentation) and reused
  every epoch; ``tune_blocks`` chooses whether blocks 8-10 are trained too or frozen as well;
- every 16 px cell gets a target: ``nodule`` is 1 inside the nodule's disc (at least the cell
  holding the centre), ``malignant`` is the nodule's malignancy, supervised only inside the disc;
- the loss adds a cell-level BCE (positives up-weighted by ``pos_weight``) and an image-level BCE
  on the max-pooled logits that the model outputs at prediction time (multiple-instance
  learning), for both outputs, whichever task is asked: one training serves both tasks;
- the epoch count and every other setting is fixed in the config beforehand (nothing is picked
  on the validation part); the validation part only sets the decision threshold.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from lungcad.errors import LungcadError
from lungcad.training.lesion_targets import cell_targets, lesion_cell_targets  # noqa: F401
from lungcad.training.registry import TrainedFold, register_trainer

ARCHITECTURE = "nodule-heatmap-lite0"
TASK_OUTPUT = {"jsrt-nodule": "nodule", "jsrt-malignant": "malignant", "lesion": "nodule"}
DEFAULTS: dict = {
    "image_size": 512,
    "model_args": {"pretrained": True, "head_channels": 64},
    "tune_blocks": True,
    "crop_cells": 8,          # training crops of crop_cells x crop_cells cells (128 px at 512)
    "epochs": 20,
    "batch_size": 16,
    "lr": 1.0e-3,
    "weight_decay": 1.0e-4,
    "pos_weight": 10.0,
    "image_loss_weight": 1.0,
    "threshold": "youden",
    "seed": 0,
    "torch_threads": 2,
    "detector": False,        # true: the model also marks nodules (model.json "detection")
}


def _config(config: Mapping | None) -> dict:
    merged = {**DEFAULTS, **(dict(config) if config else {})}
    merged["model_args"] = {**DEFAULTS["model_args"], **dict(merged.get("model_args") or {})}
    return merged


def frozen_features(network, images: Sequence[np.ndarray], batch_size: int = 8) -> dict:
    """Outputs of the frozen part for preprocessed images (C, S, S) and their mirror images."""
    import torch

    network.eval()
    out: dict[str, list] = {"f8": [], "f16": [], "f8_flip": [], "f16_flip": []}
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(np.stack(images[start:start + batch_size]))
            for suffix, inp in (("", x), ("_flip", x.flip(-1))):
                f8, f16 = network.frozen_features(inp)
                out["f8" + suffix].append(f8.numpy())
                out["f16" + suffix].append(f16.numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def _load_preprocessed(manifest, paths: Sequence[str], size: int) -> list[np.ndarray]:
    from lungcad.io import load_image
    from lungcad.models import model_info
    from lungcad.preprocess import Preprocessing

    info = model_info(ARCHITECTURE)
    pre = Preprocessing(size, 1, info.mean, info.std)
    return [pre.apply(load_image(manifest.image_path(p)).array, p) for p in paths]


FEATURE_KEYS = ("f8", "f16", "f8_flip", "f16_flip")
# frozen features of this process's images, by (dataset folder, path, size, frozen weights):
# the folds of one experiment share them (the frozen part is the same ImageNet network in every
# fold); the stem's weight sum tells a pretrained network from a randomly initialised one
_MEMO: dict[tuple, dict] = {}


def _features_for(network, manifest, paths: Sequence[str], size: int,
                  feature_cache: Mapping[str, dict] | None) -> dict:
    if feature_cache is not None and all(p in feature_cache for p in paths):
        return {k: np.stack([np.asarray(feature_cache[p][k], np.float32) for p in paths])
                for k in FEATURE_KEYS}
    stem = float(next(network.parameters()).detach().double().sum())
    key = lambda p: (str(manifest.root), p, size, stem)  # noqa: E731
    todo = [p for p in dict.fromkeys(paths) if key(p) not in _MEMO]
    if todo:
        new = frozen_features(network, _load_preprocessed(manifest, todo, size))
        for i, p in enumerate(todo):
            _MEMO[key(p)] = {k: new[k][i] for k in FEATURE_KEYS}
    return {k: np.stack([_MEMO[key(p)][k] for p in paths]) for k in FEATURE_KEYS}


def crop_origin(rng: np.random.Generator, nodule: np.ndarray, grid: int, crop: int) -> tuple[int, int]:
    """Top-left cell of a crop; on images with a nodule, most crops hold it."""
    if crop >= grid:
        return 0, 0
    cells = np.argwhere(nodule > 0)
    if len(cells) and rng.random() < 0.7:
        r, c = cells[rng.integers(len(cells))]
        lo_r, lo_c = max(0, r - crop + 1), max(0, c - crop + 1)
        return (int(rng.integers(lo_r, min(r, grid - crop) + 1)),
                int(rng.integers(lo_c, min(c, grid - crop) + 1)))
    return int(rng.integers(0, grid - crop + 1)), int(rng.integers(0, grid - crop + 1))


def heatmap_loss(cells, nodule, malignant, pos_weight: float, image_weight: float,
                 image_malignant: bool = True):
    """Cell-level BCE (nodule everywhere, malignancy inside nodules) + image-level BCE on maxima
    (of the nodule map, and with ``image_malignant`` of the malignancy map too)."""
    import torch
    from torch.nn import functional as F

    from lungcad.models.nodule_heatmap import malignant_logit

    nod_logit, mal_logit = cells[:, 0], cells[:, 1]
    weight = torch.tensor(pos_weight, dtype=cells.dtype)
    loss = F.binary_cross_entropy_with_logits(nod_logit, nodule, pos_weight=weight)
    known = torch.isfinite(malignant)   # NaN: a synthetic nodule, neither benign nor malignant
    inside = (nodule > 0) & known
    if inside.any():
        loss = loss + F.binary_cross_entropy_with_logits(mal_logit[inside], malignant[inside])
    if image_weight > 0:
        image = F.binary_cross_entropy_with_logits(torch.amax(nod_logit, dim=(1, 2)),
                                                   torch.amax(nodule, dim=(1, 2)))
        whole = known.all(dim=(1, 2))  # the image's malignancy is known: no synthetic nodule
        if image_malignant and whole.any():
            image = image + F.binary_cross_entropy_with_logits(
                torch.amax(malignant_logit(nod_logit, mal_logit)[whole], dim=(1, 2)),
                torch.amax(malignant[whole], dim=(1, 2)))
        loss = loss + image_weight * image
    return loss


def train_heatmap_network(network, feats: dict, nodule: np.ndarray, malignant: np.ndarray,
                          config: Mapping, log=print) -> None:
    """Train the unfrozen part of ``network`` on cached frozen features and cell targets."""
    import torch

    cfg = _config(config)
    rng = np.random.default_rng(cfg["seed"])
    torch.manual_seed(cfg["seed"])
    for p in network.frozen_parameters():
        p.requires_grad_(False)
    tune = bool(cfg["tune_blocks"])
    f8 = {False: torch.from_numpy(feats["f8"]), True: torch.from_numpy(feats["f8_flip"])}
    f16 = {False: torch.from_numpy(feats["f16"]), True: torch.from_numpy(feats["f16_flip"])}
    if not tune:  # blocks 8-10 frozen too: run them once
        network.blocks_tuned.eval()
        for p in network.blocks_tuned.parameters():
            p.requires_grad_(False)
        with torch.inference_mode():
            for flip in (False, True):
                x = f16[flip]
                for block in network.blocks_tuned:
                    x = block(x)
                f16[flip] = x.clone()
    nod = {False: torch.from_numpy(nodule), True: torch.from_numpy(nodule[:, :, ::-1].copy())}
    mal = {False: torch.from_numpy(malignant), True: torch.from_numpy(malignant[:, :, ::-1].copy())}
    grid = nodule.shape[-1]
    crop = min(int(cfg["crop_cells"]), grid)
    trainable = [p for p in network.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    n, bs, epochs = len(nodule), int(cfg["batch_size"]), int(cfg["epochs"])
    steps = epochs * max(1, -(-n // bs))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg["lr"], total_steps=steps,
                                                pct_start=0.1)
    network.head.train()
    network.cells.train()
    if tune:
        network.blocks_tuned.train()
    t0 = time.time()
    for epoch in range(epochs):
        order, total = rng.permutation(n), 0.0
        for start in range(0, n, bs):
            idx = order[start:start + bs]
            flips = rng.random(len(idx)) < 0.5
            parts = []
            for i, flip in zip(idx, flips):
                r, c = crop_origin(rng, nod[bool(flip)][i].numpy(), grid, crop)
                sl = (slice(r, r + crop), slice(c, c + crop))
                parts.append((f8[bool(flip)][i][:, sl[0], sl[1]], f16[bool(flip)][i][:, sl[0], sl[1]],
                              nod[bool(flip)][i][sl], mal[bool(flip)][i][sl]))
            b8, b16, bn, bm = (torch.stack(t) for t in zip(*parts))
            if tune:
                cells = network.cells_from_features(b8, b16)
            else:
                cells = network.cells(network.head(torch.cat([b8, b16], dim=1)))
            loss = heatmap_loss(cells, bn, bm, cfg["pos_weight"], cfg["image_loss_weight"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        if epoch % 5 == 0 or epoch == epochs - 1:
            log(f"epoch {epoch}: loss {total / n:.4f} ({time.time() - t0:.0f} s)")
    network.eval()


def _task_labels(task, rows: pd.DataFrame) -> np.ndarray:
    return np.asarray(task.class_index(rows["label"]), dtype=int)


def seeded_network(cfg: dict, architecture: str):
    """A new binary ``architecture``: threads set, size checked, weights from the seed."""
    import torch

    from lungcad.models import create_model

    torch.set_num_threads(int(cfg["torch_threads"]))
    size = int(cfg["image_size"])
    if size % 32:
        raise LungcadError(f"{architecture}: image_size must be a multiple of 32, got {size}")
    torch.manual_seed(int(cfg["seed"]))  # the head's initial weights, reproducibly
    return create_model(architecture, 2, **cfg["model_args"])


def _network(cfg: dict):
    return seeded_network(cfg, _architecture(cfg))


def _architecture(cfg: dict) -> str:
    """The config's ``model``: this network (a detector too with ``detector: true``)."""
    name = cfg.get("model") or ARCHITECTURE
    if name != ARCHITECTURE:
        raise LungcadError(f"the nodule_heatmap trainer trains {ARCHITECTURE}, not {name} (a "
                           f"detector is {ARCHITECTURE} with `detector: true` in the config)")
    return name


def _output(task) -> str:
    if task.name not in TASK_OUTPUT:
        raise LungcadError(f"{ARCHITECTURE} trains only {sorted(TASK_OUTPUT)}, not {task.name}")
    return TASK_OUTPUT[task.name]


def _trained_fold(network, cfg: dict, task, manifest, n_train: int, val_scores: np.ndarray,
                  name: str | None = None, detection_extra: dict | None = None):
    """The network set to ``task``'s output, its spec and card, for :func:`fit.finish`;
    ``name``: the architecture (default the config's heatmap network), ``detection_extra``:
    more of model.json's ``detection`` (a detector's second stage)."""
    from lungcad.model_dir import ModelSpec
    from lungcad.models import loading_args, model_info
    from lungcad.preprocess import Preprocessing

    output, size = _output(task), int(cfg["image_size"])
    name = name or _architecture(cfg)
    info = model_info(name)
    network.output = output
    detection = None
    if cfg["detector"]:
        from lungcad.detection.marks import MarkSettings

        detection = {"marks": MarkSettings.from_mapping(cfg.get("marks")).to_dict(),
                     **(detection_extra or {})}
    spec = ModelSpec(name=cfg.get("name", f"{task.name}-{name}"),
                     architecture=name, task=task.name, classes=list(task.classes),
                     preprocessing=Preprocessing(size, 1, info.mean, info.std),
                     architecture_args=loading_args(name, {**cfg["model_args"], "output": output}),
                     modality="chest radiograph", metrics={"n_train": n_train},
                     detection=detection)

    def card(final) -> str:
        return (f"# {final.name}\n\nResearch software, not a medical device. Not for "
                f"diagnosis.\n\n- Architecture: `{name}` ({size} px), output "
                f"`{output}`: the image score is the strongest 16 px cell of a nodule heatmap\n"
                f"- Trained on {n_train} images of `{manifest.root}` with the nodule positions "
                "and sizes as cell targets; prediction uses the image only\n"
                f"- Threshold {final.threshold:.4g} ({final.threshold_rule})\n")

    probs = np.stack([1.0 - val_scores.astype(np.float64), val_scores.astype(np.float64)], 1)
    return TrainedFold(network, spec, card, probs)


def _train(manifest, view_tasks, train_paths, cfg, feature_cache, log, refused=()):
    from lungcad.training.synthetic_nodules import SyntheticSettings

    network = _network(cfg)
    train_rows = manifest.rows_for(list(train_paths))
    for t in view_tasks:
        _output(t)
        t.check_labels(train_rows["label"])
    synthetic = SyntheticSettings.from_mapping(cfg.get("synthetic"))
    feats = _features_for(network, manifest, train_paths, int(cfg["image_size"]), feature_cache)
    grid, size = feats["f16"].shape[-1], int(cfg["image_size"])
    nodule, malignant = lesion_cell_targets(manifest, list(train_paths), grid, size,
                                            stride=size // grid,
                                            min_radius_mm=float(cfg.get("min_radius_mm", 0.0)),
                                            log=log)
    if synthetic.copies:
        feats, nodule, malignant = _add_synthetic(network, manifest, train_rows, refused, feats,
                                                  nodule, malignant, size, synthetic, log)
    train_heatmap_network(network, feats, nodule, malignant, cfg, log=log)
    return network


def _add_synthetic(network, manifest, train_rows, refused, feats, nodule, malignant, size,
                   settings, log):
    """The training features and targets with the synthetic copies of the training images
    appended (:mod:`lungcad.training.synthetic_nodules`)."""
    from lungcad.jsrt_geometry import jsrt_mm_per_pixel
    from lungcad.models import model_info
    from lungcad.preprocess import Preprocessing
    from lungcad.training.synthetic_nodules import simulate_training_set, training_image_loaders

    load_image, load_mask = training_image_loaders(manifest, size)
    mm = jsrt_mm_per_pixel(size)
    made = simulate_training_set(train_rows, refused, load_image, load_mask, mm, settings, log)
    info = model_info(ARCHITECTURE)
    pre = Preprocessing(size, 1, info.mean, info.std)
    new = frozen_features(network, [pre.apply(im, "synthetic") for im in made.images])
    syn_nodule, syn_malignant = made.targets(nodule, malignant, size // nodule.shape[-1], mm)
    return ({k: np.concatenate([feats[k], new[k]]) for k in FEATURE_KEYS},
            np.concatenate([nodule, syn_nodule]), np.concatenate([malignant, syn_malignant]))


@register_trainer("nodule_heatmap", defaults=DEFAULTS,
                  description="nodule-heatmap-lite0: 16 px cell targets from the JSRT nodule "
                              "positions on frozen ImageNet Lite0 features (jsrt-nodule, "
                              "jsrt-malignant)")
def fit(view, out_dir: str | Path, config: Mapping | None = None, *, resume: bool = True,
        feature_cache: Mapping[str, dict] | None = None, log=print):
    """Train ``nodule-heatmap-lite0`` on ``view``'s training part; score its validation part.

    ``feature_cache`` (optional) maps a path to its precomputed :func:`frozen_features`
    entries, to save time across folds.
    """
    from lungcad.models.nodule_heatmap import score_features

    cfg = _config(config)
    network = _train(view.manifest, [view.task], list(view.train), cfg, feature_cache, log,
                     refused=list(view.held_out))
    val_feats = _features_for(network, view.manifest, list(view.val), int(cfg["image_size"]),
                              feature_cache)
    val_scores = score_features(network, val_feats, _output(view.task))
    return _trained_fold(network, cfg, view.task, view.manifest, len(view.train), val_scores)


def train_tasks(manifest, train_paths: Sequence[str], val_paths: Sequence[str],
                tasks: Sequence[str], config: Mapping | None = None, *,
                feature_cache: Mapping[str, dict] | None = None, log=print,
                score_paths: Sequence[str] = ()) -> dict:
    """One training (both outputs are trained anyway) for several tasks.

    Returns {task name: :class:`TrainedFold`} (for :func:`lungcad.training.fit.finish`, which
    decides each threshold on ``val_paths``); with ``score_paths`` also {"scores": {task:
    probs}} for those images (e.g. a fold's test part), computed from the cached features.
    """
    import copy

    from lungcad.data.manifest import Manifest
    from lungcad.data.tasks import get_task
    from lungcad.models.nodule_heatmap import score_features

    cfg = _config(config)
    task_objs = [get_task(t) for t in tasks]
    if not isinstance(manifest, Manifest):
        manifest = Manifest.load(manifest)
    if not train_paths or not val_paths:
        raise LungcadError(f"{ARCHITECTURE}: both the training and the validation part need images")
    network = _train(manifest, task_objs, train_paths, cfg, feature_cache, log,
                     refused=list(val_paths) + list(score_paths))
    size = int(cfg["image_size"])
    val_feats = _features_for(network, manifest, val_paths, size, feature_cache)
    score_feats = (_features_for(network, manifest, score_paths, size, feature_cache)
                   if len(score_paths) else None)
    result: dict = {"scores": {}}
    for t in task_objs:
        output = _output(t)
        if score_feats is not None:
            result["scores"][t.name] = score_features(network, score_feats, output)
        result[t.name] = _trained_fold(copy.deepcopy(network), cfg, t, manifest,
                                       len(train_paths),
                                       score_features(network, val_feats, output))
    return result
