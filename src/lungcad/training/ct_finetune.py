"""Trainer ``ct_finetune``: ImageNet EfficientNet-Lite0 with its last blocks fine-tuned on CT slices.

A registered trainer (:mod:`lungcad.training.registry`) whose model is an ordinary
``efficientnet-lite0`` (so ``lungcad predict``, ``explain``, ``export`` and ``serve`` use it as
any other): the stem and blocks ``0 .. freeze_blocks - 1`` keep their ImageNet weights, the
later blocks, the head convolution and a fresh classifier are trained.

Why it is built this way (2 shared CPU cores): the frozen part is the costly part of the network
(its high-resolution layers), so its outputs are computed once per image and view and cached (in
memory and on disk, ``<cache>/ct_finetune``, keyed by the image's identity, the preprocessing,
the weights, the cut and the view), as the nodule-heatmap trainer does for JSRT. Each epoch then
runs only the trained blocks. The views (the only augmentation the cache allows) are the slice,
its mirror image, and ``jitter_views`` randomly jittered copies made for CT: window/level and
gamma jitter, a random resized crop (scale 0.75-1), a small rotation (up to 10 degrees) and a
random mirror; every epoch picks one view per slice at random. Classes are balanced in the loss
(inverse-frequency weights: the 120 benign IQ-OTH/NCCD slices weigh as much as the rest).
The epoch count and every other setting is fixed in the config; the validation part only sets
the decision threshold (binary tasks), so ``--final`` can train on every image.

Settings (config keys, defaults in ``DEFAULTS``): ``image_size``, ``freeze_blocks`` (of 16),
``jitter_views``, ``epochs``, ``batch_size``, ``lr``, ``weight_decay``, ``dropout``,
``label_smoothing``, ``class_weight`` (``balanced`` or ``none``), ``threshold``, ``seed``,
``torch_threads``. On a GPU, ``configs/*-efficientnet-lite0.yaml`` fine-tune the whole network
end to end instead (``benchmarks/gpu_suite.sh``).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from lungcad.array_cache import ArrayCache, file_identity
from lungcad.errors import LungcadError
from lungcad.training.registry import TrainedFold, register_trainer

ARCHITECTURE = "efficientnet-lite0"
N_BLOCKS = 16
DEFAULTS: dict = {
    "image_size": 224,
    "freeze_blocks": 14,
    "jitter_views": 2,
    "epochs": 12,
    "batch_size": 32,
    "lr": 1.0e-3,
    "weight_decay": 1.0e-4,
    "dropout": 0.3,
    "label_smoothing": 0.05,
    "class_weight": "balanced",
    "threshold": "youden",
    "seed": 0,
    "torch_threads": 2,
}
_MEMO: dict[str, np.ndarray] = {}


def _config(config: Mapping | None) -> dict:
    cfg = {**DEFAULTS, **(dict(config) if config else {})}
    if not 1 <= int(cfg["freeze_blocks"]) <= N_BLOCKS - 1:
        raise LungcadError(f"ct_finetune: freeze_blocks must be 1 to {N_BLOCKS - 1}, not "
                           f"{cfg['freeze_blocks']}")
    if int(cfg["image_size"]) % 32:
        raise LungcadError(f"ct_finetune: image_size must be a multiple of 32, got "
                           f"{cfg['image_size']}")
    return cfg


def jitter(image: np.ndarray, rng: np.random.Generator, mean: float, std: float) -> np.ndarray:
    """One CT-style jittered copy of a preprocessed slice (C, S, S), normalised as it came."""
    import torch
    from torchvision.transforms.v2 import functional as F

    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)) * std + mean  # [0, 1]
    side = x.shape[-1]
    centre, width = rng.uniform(0.42, 0.58), rng.uniform(0.8, 1.25)      # window / level
    x = ((x - centre) / width + 0.5).clamp(0, 1) ** float(rng.uniform(0.8, 1.25))  # gamma
    x = x * float(rng.uniform(0.9, 1.1)) + float(rng.uniform(-0.05, 0.05))  # intensity
    scale, ratio = rng.uniform(0.75, 1.0), rng.uniform(0.9, 1.1)
    h = int(round(side * np.sqrt(scale / ratio)))
    w = int(round(side * np.sqrt(scale * ratio)))
    h, w = min(h, side), min(w, side)
    top, left = int(rng.integers(0, side - h + 1)), int(rng.integers(0, side - w + 1))
    x = F.resized_crop(x, top, left, h, w, [side, side], antialias=True)
    x = F.rotate(x, float(rng.uniform(-10, 10)))
    if rng.random() < 0.5:
        x = x.flip(-1)
    return ((x.clamp(0, 1) - mean) / std).numpy()


def view_images(image: np.ndarray, n_jitter: int, seed: int, mean: float, std: float) -> list:
    """The slice, its mirror image and ``n_jitter`` jittered copies (seeded per slice)."""
    rng = np.random.default_rng(seed)
    return [image, image[..., ::-1].copy()] + [jitter(image, rng, mean, std)
                                                for _ in range(n_jitter)]


def frozen_forward(backbone, x, cut: int):
    """The frozen part: stem and blocks ``0 .. cut - 1`` (evaluation mode, no drop connect)."""
    x = backbone._swish(backbone._bn0(backbone._conv_stem(x)))
    for block in backbone._blocks[:cut]:
        x = block(x)
    return x


def tail_forward(backbone, x, cut: int):
    """The trained part: blocks ``cut ..``, the head convolution, pooling, dropout, classifier."""
    rate = backbone._global_params.drop_connect_rate
    for idx in range(cut, len(backbone._blocks)):
        x = backbone._blocks[idx](x, drop_connect_rate=rate * idx / len(backbone._blocks)
                                  if rate else None)
    x = backbone._swish(backbone._bn1(backbone._conv_head(x)))
    x = backbone._avg_pooling(x).flatten(start_dim=1)
    return backbone._fc(backbone._dropout(x))


VIEWS = ArrayCache("ct-finetune-views", version=1)


def _cache_file(image: Path, preprocessing, cut: int, view: int) -> str:
    """The array cache's key of one view's frozen-part output."""
    from lungcad.models.efficientnet_lite import LITE0_WEIGHTS_SHA256

    return VIEWS.key(image=file_identity(image), pre=preprocessing.to_dict(),
                     weights=LITE0_WEIGHTS_SHA256, cut=cut, view=view)


def cached_views(network, manifest, paths: Sequence[str], preprocessing, cut: int,
                 n_views: int, log=print) -> np.ndarray:
    """Frozen-part outputs (N, V, C, H, W) float16 of every slice's views (cached)."""
    import torch

    from lungcad.io import load_image

    mean, std = float(preprocessing.mean), float(preprocessing.std)
    todo = []
    for p in dict.fromkeys(paths):
        files = [_cache_file(manifest.image_path(p), preprocessing, cut, v) for v in range(n_views)]
        for f in files:
            if str(VIEWS.path(f)) not in _MEMO:  # memo by entry path: one per cache root
                cached = VIEWS.get(f)
                if cached is None:
                    todo.append(p)
                    break
                _MEMO[str(VIEWS.path(f))] = cached
    if todo:
        log(f"ct_finetune: frozen blocks 0-{cut - 1} of {len(todo)} slice(s) x {n_views} views")
    network.eval()
    with torch.inference_mode():
        for p in todo:
            image = preprocessing.apply(load_image(manifest.image_path(p)).array, p)
            seed = int(hashlib.sha256(p.encode()).hexdigest()[:8], 16)
            views = np.stack(view_images(image, n_views - 2, seed, mean, std)).astype(np.float32)
            out = frozen_forward(network.backbone, torch.from_numpy(views), cut).numpy()
            for v in range(n_views):
                f = _cache_file(manifest.image_path(p), preprocessing, cut, v)
                _MEMO[str(VIEWS.path(f))] = out[v].astype(np.float16)
                VIEWS.put(f, _MEMO[str(VIEWS.path(f))])
    return np.stack([[_MEMO[str(VIEWS.path(_cache_file(manifest.image_path(p), preprocessing,
                                                        cut, v)))]
                      for v in range(n_views)] for p in paths])


def train_tail(network, feats: np.ndarray, y: np.ndarray, n_classes: int, cfg: Mapping,
               log=print) -> list[float]:
    """Train the tail on cached views: one random view per slice per epoch."""
    import torch

    backbone, cut = network.backbone, int(cfg["freeze_blocks"])
    rng = np.random.default_rng(int(cfg["seed"]))
    torch.manual_seed(int(cfg["seed"]))
    params = [p for p in network.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=float(cfg["lr"]),
                                  weight_decay=float(cfg["weight_decay"]))
    epochs, batch = int(cfg["epochs"]), int(cfg["batch_size"])
    steps = epochs * int(np.ceil(len(y) / batch))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, float(cfg["lr"]), total_steps=steps,
                                                   pct_start=0.15)
    counts = np.bincount(y, minlength=n_classes).astype(float)
    weight = (torch.tensor(len(y) / (n_classes * np.maximum(counts, 1)), dtype=torch.float32)
              if str(cfg["class_weight"]) == "balanced" else None)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight,
                                        label_smoothing=float(cfg["label_smoothing"]))
    targets = torch.from_numpy(y.astype(np.int64))
    losses = []
    for epoch in range(epochs):
        start, total = time.time(), 0.0
        network.train()
        _frozen_to_eval(network, cut)
        order = rng.permutation(len(y))
        views = rng.integers(0, feats.shape[1], len(y))
        for s in range(0, len(y), batch):
            idx = order[s:s + batch]
            x = torch.from_numpy(feats[idx, views[idx]].astype(np.float32))
            loss = loss_fn(tail_forward(backbone, x, cut), targets[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / len(y))
        log(f"ct_finetune: epoch {epoch + 1}/{epochs} loss {losses[-1]:.4f} "
            f"({time.time() - start:.0f} s)")
    network.eval()
    return losses


def _frozen_to_eval(network, cut: int) -> None:
    backbone = network.backbone
    for module in (backbone._conv_stem, backbone._bn0, *backbone._blocks[:cut]):
        module.eval()


def predict_views(network, feats: np.ndarray, cut: int, batch: int = 64) -> np.ndarray:
    """Probabilities from the cached slice view (view 0): what predicting the image gives."""
    import torch

    from lungcad.models import logits_to_probs

    network.eval()
    out = []
    with torch.inference_mode():
        for s in range(0, len(feats), batch):
            x = torch.from_numpy(feats[s:s + batch, 0].astype(np.float32))
            out.append(logits_to_probs(tail_forward(network.backbone, x, cut)).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def build_network(n_classes: int, cut: int, dropout: float):
    """The ImageNet Lite0 with its stem and first ``cut`` blocks frozen and a fresh classifier."""
    import torch

    from lungcad.models import create_model

    network = create_model(ARCHITECTURE, n_classes, pretrained=True, freeze_backbone=False)
    backbone = network.backbone
    for module in (backbone._conv_stem, backbone._bn0, *backbone._blocks[:cut]):
        for p in module.parameters():
            p.requires_grad_(False)
    backbone._dropout = torch.nn.Dropout(dropout)
    return network


@register_trainer("ct_finetune", defaults=DEFAULTS,
                  description="ImageNet EfficientNet-Lite0, last blocks fine-tuned on cached "
                              "frozen-block outputs of CT-augmented views, balanced loss")
def fit(view, out_dir: str | Path, config: Mapping | None = None, *, resume: bool = True,
        log=print):
    """Fine-tune on ``view``'s training part; validation probabilities come back unrounded."""
    import torch

    from lungcad.model_dir import ModelSpec
    from lungcad.models import model_info
    from lungcad.preprocess import Preprocessing

    cfg = _config(config)
    manifest, task = view.manifest, view.task
    train_paths, val_paths = list(view.train), list(view.val)
    size, cut = int(cfg["image_size"]), int(cfg["freeze_blocks"])
    n_views = 2 + int(cfg["jitter_views"])
    torch.set_num_threads(int(cfg["torch_threads"]))
    info = model_info(ARCHITECTURE)
    preprocessing = Preprocessing(size, 1, info.mean, info.std)
    y = np.asarray(view.labels("train"), dtype=int)
    if len(np.unique(y)) < len(task.classes):
        raise LungcadError(f"ct_finetune: the training part lacks class(es) of {task.name}")
    network = build_network(len(task.classes), cut, float(cfg["dropout"]))
    start = time.time()
    feats = cached_views(network, manifest, train_paths, preprocessing, cut, n_views, log)
    losses = train_tail(network, feats, y, len(task.classes), cfg, log)
    val_probs = predict_views(network, cached_views(network, manifest, val_paths, preprocessing,
                                                    cut, n_views, log), cut)
    trained = int(sum(p.numel() for p in network.parameters() if p.requires_grad))
    spec = ModelSpec(name=cfg.get("name") or f"{task.name}-ct-finetune-lite0",
                     architecture=ARCHITECTURE, task=task.name, classes=list(task.classes),
                     preprocessing=preprocessing,
                     architecture_args={"pretrained": False, "freeze_backbone": False},
                     modality=str(cfg.get("modality") or "ct"),
                     metrics={"n_train": len(train_paths), "final_train_loss": losses[-1],
                              "trained_parameters": trained,
                              "train_seconds": round(time.time() - start, 1)})

    def card(final) -> str:
        decision = (f"- Threshold {final.threshold:.4g} ({final.threshold_rule})\n"
                    if final.threshold is not None else "- Decision: the most probable class\n")
        return (f"# {final.name}\n\nResearch software, not a medical device. Not for "
                f"diagnosis.\n\n- Architecture: `{ARCHITECTURE}` ({size} px), ImageNet weights; "
                f"blocks {cut}-{N_BLOCKS - 1}, the head convolution and the classifier "
                f"fine-tuned ({trained:,} parameters), the rest frozen\n- Trained on "
                f"{len(train_paths)} images of `{manifest.root}` for {cfg['epochs']} epochs on "
                f"{n_views} views per slice (mirror, window/level, crop, rotation), "
                "class-balanced loss\n" + decision)

    return TrainedFold(network, spec, card, val_probs)
