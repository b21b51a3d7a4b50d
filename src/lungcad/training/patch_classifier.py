"""Training and scoring a second-stage patch classifier (:mod:`lungcad.models.nodule_patch`).

Training samples are (image, x, y, label, jitter_mm) rows over a set of images (real training
images and their synthetic copies); every batch holds as many positives as negatives, drawn at
random, each patch cut (:func:`lungcad.models.patches.sample_patches`) at a random rotation,
mirror image and scale, its centre moved by up to ``jitter_mm`` (a candidate seldom lies on a
nodule's centre). Scoring is :func:`lungcad.models.nodule_patch.score_candidates`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from lungcad.errors import LungcadError
from lungcad.models.patches import PatchSettings, sample_patches


@dataclass(frozen=True)
class PatchTraining:
    steps: int = 400
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    scale_range: tuple[float, float] = (0.8, 1.25)
    seed: int = 0


def train_patch_classifier(network: torch.nn.Module, images: Sequence[torch.Tensor],
                           samples: pd.DataFrame, mm_per_pixel: float,
                           patches: PatchSettings = PatchSettings(),
                           training: PatchTraining = PatchTraining(), log=print) -> None:
    """Train ``network`` on ``samples`` (columns ``image`` (index into ``images``), ``x``,
    ``y``, ``label`` 0/1, ``jitter_mm``) with balanced batches and random augmentation."""
    labels = samples["label"].to_numpy(int)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    if not len(pos) or not len(neg):
        raise LungcadError("the patch classifier needs nodule and non-nodule samples")
    rng = np.random.default_rng(training.seed)
    torch.manual_seed(training.seed)
    params = [p for p in network.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=training.lr, weight_decay=training.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=training.lr,
                                                total_steps=training.steps, pct_start=0.1)
    image_of = samples["image"].to_numpy(int)
    xy = samples[["x", "y"]].to_numpy(float)
    jitter = samples["jitter_mm"].to_numpy(float) / mm_per_pixel
    half = training.batch_size // 2
    network.train()
    t0, total = time.time(), 0.0
    for step in range(training.steps):
        idx = np.concatenate([rng.choice(pos, half), rng.choice(neg, training.batch_size - half)])
        batch, target = [], []
        for k in np.unique(image_of[idx]):
            at = idx[image_of[idx] == k]
            n = len(at)
            r, phi = jitter[at] * np.sqrt(rng.random(n)), rng.uniform(0, 2 * np.pi, n)
            centres = xy[at] + np.column_stack([r * np.cos(phi), r * np.sin(phi)])
            batch.append(sample_patches(images[k], centres, mm_per_pixel, patches,
                                        angle=rng.uniform(0, 2 * np.pi, n),
                                        mirror=rng.random(n) < 0.5,
                                        scale=np.exp(rng.uniform(*np.log(training.scale_range),
                                                                 n))))
            target.append(labels[at])
        x = torch.cat(batch)
        y = torch.from_numpy(np.concatenate(target).astype(np.float32))
        loss = F.binary_cross_entropy_with_logits(network(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        total += float(loss.detach())
        if (step + 1) % 100 == 0 or step + 1 == training.steps:
            log(f"patch step {step + 1}: loss {total / 100:.4f} ({time.time() - t0:.0f} s)")
            total = 0.0
    network.eval()


def settings_from(config: Mapping | None) -> tuple[PatchSettings, PatchTraining]:
    """Patch and training settings from a config's ``patches`` / ``patch_training`` mappings."""
    config = dict(config or {})
    patch = dict(config.get("patches") or {})
    if "context_mm" in patch:
        patch["context_mm"] = tuple(float(v) for v in patch["context_mm"])
    train = dict(config.get("patch_training") or {})
    if "scale_range" in train:
        train["scale_range"] = tuple(float(v) for v in train["scale_range"])
    try:
        return PatchSettings(**patch), PatchTraining(**train)
    except TypeError as error:
        raise LungcadError(f"patch classifier settings: {error}") from None
