"""Trainer ``two_stage``: ``nodule-two-stage-lite0``, a heatmap detector with a trained second
stage that looks closely at each of its candidates.

On the fold's training images only:

1. stage 1 is trained exactly as the ``nodule_heatmap`` trainer trains it (its settings, the
   synthetic copies of ``synthetic`` included);
2. its candidates on the training images (the ``second_stage.candidates`` strongest maxima of
   its flip-averaged map, at least ``candidate_distance_mm`` apart, in the lungs dilated by the
   marks' margin) are labelled by the FROC hit rule (radius + 5 mm): those that miss are the
   hard negatives (``patch_samples.negatives: hard``; ``random``: points drawn in the lungs
   instead), those that hit are positives, as are the nodules' centres and the synthetic
   nodules of ``patch_samples.synthetic_copies`` further copies of each training image
   (:mod:`lungcad.training.synthetic_nodules`);
3. the patch classifier (``patch_model``) is trained on them with balanced batches and random
   rotation, mirror image, scale and centre jitter (:mod:`lungcad.training.patch_classifier`).

The validation part sets the image-level threshold on stage 1's image score (the network's
output); the marks are fused as :mod:`lungcad.detection.second_stage` says.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from lungcad.errors import LungcadError
from lungcad.training import nodule_heatmap
from lungcad.training.registry import register_trainer

ARCHITECTURE = "nodule-two-stage-lite0"
NEGATIVES = ("hard", "random")
DEFAULTS: dict = {
    **nodule_heatmap.DEFAULTS,
    "model": ARCHITECTURE,
    "detector": True,
    "second_stage": {"candidates": 30, "candidate_distance_mm": 10.0},
    "patch_model": {"kind": "cnn", "side": 32, "context_mm": [24.0, 48.0]},
    "patch_training": {"steps": 400, "batch_size": 32, "lr": 1.0e-3},
    "patch_samples": {"negatives": "hard", "synthetic_copies": 2},
}


def _config(config: Mapping | None) -> dict:
    merged = {**DEFAULTS, **dict(config or {})}
    for key in ("model_args", "second_stage", "patch_model", "patch_training", "patch_samples"):
        merged[key] = {**DEFAULTS[key], **dict(merged.get(key) or {})}
    if merged["model"] != ARCHITECTURE:
        raise LungcadError(f"the two_stage trainer trains {ARCHITECTURE}, not {merged['model']}")
    if merged["patch_samples"]["negatives"] not in NEGATIVES:
        raise LungcadError(f"patch_samples.negatives is one of {list(NEGATIVES)}, not "
                           f"{merged['patch_samples']['negatives']!r}")
    return merged


def training_candidates(stage1, manifest, paths: Sequence[str], load_mask, size: int,
                        mm_per_pixel: float, second, margin_mm: float,
                        feature_cache=None) -> pd.DataFrame:
    """Stage 1's candidates on ``paths`` (``path``, ``x``, ``y`` in the ``size`` px frame,
    ``radius_mm``, ``p1``), strongest first within each image."""
    from lungcad.detection.candidates import map_candidates
    from lungcad.models.nodule_heatmap import cell_probabilities

    feats = nodule_heatmap._features_for(stage1, manifest, list(paths), size, feature_cache)
    frames = []
    for path, p in zip(paths, cell_probabilities(stage1, feats)):
        c = map_candidates(p[0], load_mask(path), (size, size), mm_per_pixel,
                           limit=second.candidates, min_distance_mm=second.candidate_distance_mm,
                           lung_margin_mm=margin_mm)
        frames.append(c.assign(path=path, p1=c["score"]))
    return pd.concat(frames, ignore_index=True)


def candidate_hits(candidates: pd.DataFrame, truth, size: int | None = None) -> np.ndarray:
    """The nodule of ``truth`` each candidate hits by the FROC hit rule (its row; -1: none);
    coordinates in a ``size`` px frame, or (None) each row's own ``frame_size``."""
    from lungcad.evaluation import froc

    frame = candidates["frame_size"] if size is None else size
    marks = candidates[["path", "x", "y", "radius_mm"]].assign(score=0.5, frame_size=frame)
    return froc.match(froc.normalise_paths(froc.validate_findings(marks), truth),
                      truth).mark_nodule


def training_samples(manifest, train: Sequence[str], refused: Sequence[str],
                     candidates: pd.DataFrame, load_image, load_mask, size: int,
                     mm_per_pixel: float, negatives: str = "hard", synthetic_copies: int = 0,
                     seed: int = 0, log=print):
    """(images, samples) for the patch classifier: the training images (then their synthetic
    copies) as (S, S) tensors, and one sample row each (``image``, ``x``, ``y``, ``label``,
    ``jitter_mm``) for every nodule centre, every candidate, and every synthetic nodule."""
    import torch

    from lungcad.evaluation import froc
    from lungcad.training.synthetic_nodules import SyntheticSettings, simulate_training_set

    train = list(train)
    images = [torch.from_numpy(np.asarray(load_image(p), np.float32)) for p in train]
    index = {p: i for i, p in enumerate(train)}
    truth = froc.truth_from_table(manifest.rows_for(train), train)
    # JSRT geometry: a nodule's mm over the frame's mm per pixel is its pixel in the frame
    rows = [(index[n.path], n.x_mm / mm_per_pixel, n.y_mm / mm_per_pixel, 1,
             min(3.0, n.size_mm / 4)) for n in truth.nodules.itertuples()]
    hit = candidate_hits(candidates, truth, size) >= 0 if len(candidates) else np.zeros(0, bool)
    for c, h in zip(candidates.itertuples(), hit):
        if h or negatives == "hard":
            rows.append((index[c.path], c.x, c.y, int(h), 2.0))
    if negatives == "random":
        rng = np.random.default_rng(seed)
        per_image = max(1, int(round(len(candidates) / max(len(train), 1))))
        for p in train:
            ys, xs = np.nonzero(load_mask(p))
            for k in rng.choice(len(xs), min(per_image, len(xs)), replace=False):
                rows.append((index[p], float(xs[k]), float(ys[k]), 0, 2.0))
    if synthetic_copies:
        made = simulate_training_set(
            manifest.rows_for(train), refused, load_image, load_mask, mm_per_pixel,
            SyntheticSettings(copies=int(synthetic_copies), per_image=3, jitter=0.05, seed=seed),
            log)
        for image, found in zip(made.images, made.nodules):
            images.append(torch.from_numpy(np.asarray(image, np.float32)))
            rows += [(len(images) - 1, s.x, s.y, 1, min(3.0, s.diameter_mm / 4))
                     for s in found.itertuples()]
    return images, pd.DataFrame(rows, columns=["image", "x", "y", "label", "jitter_mm"])


def train_second_stage(stage1, manifest, train: Sequence[str], refused: Sequence[str],
                       cfg: dict, feature_cache=None, log=print):
    """The two-stage network: ``stage1`` (trained) and a patch classifier trained on the
    training images' candidates, nodules and synthetic nodules."""
    import copy

    import torch

    from lungcad.detection.marks import MarkSettings
    from lungcad.detection.second_stage import SecondStageSettings
    from lungcad.jsrt_geometry import jsrt_mm_per_pixel
    from lungcad.models import create_model
    from lungcad.training.patch_classifier import settings_from, train_patch_classifier
    from lungcad.training.synthetic_nodules import training_image_loaders

    size = int(cfg["image_size"])
    mm = jsrt_mm_per_pixel(size)
    second = SecondStageSettings.from_mapping(cfg["second_stage"])
    margin = MarkSettings.from_mapping(cfg.get("marks")).lung_margin_mm
    load_image, load_mask = training_image_loaders(manifest, size)
    candidates = training_candidates(stage1, manifest, train, load_mask, size, mm, second,
                                     margin, feature_cache)
    samples_cfg = cfg["patch_samples"]
    images, samples = training_samples(
        manifest, train, refused, candidates, load_image, load_mask, size, mm,
        samples_cfg["negatives"], int(samples_cfg["synthetic_copies"]), int(cfg["seed"]), log)
    log(f"second stage: {int(samples['label'].sum())} nodule and "
        f"{int((samples['label'] == 0).sum())} other patches")
    patch = dict(cfg["patch_model"])
    patches, training = settings_from({"patches": {"side": patch.pop("side"),
                                                   "context_mm": patch.pop("context_mm")},
                                       "patch_training": {**cfg["patch_training"],
                                                          "seed": int(cfg["seed"])}})
    torch.manual_seed(int(cfg["seed"]))
    network = create_model(ARCHITECTURE, 2, **_model_args(cfg))
    network.stage1 = copy.deepcopy(stage1)
    train_patch_classifier(network.stage2, images, samples, mm, patches, training, log=log)
    network.eval()
    return network


def _model_args(cfg: dict) -> dict:
    patch = dict(cfg["patch_model"])
    return {**cfg["model_args"], "patch_kind": patch.pop("kind"), "patch_side": patch.pop("side"),
            "context_mm": [float(c) for c in patch.pop("context_mm")], "patch_args": patch}


@register_trainer("two_stage", defaults=DEFAULTS,
                  description="nodule-two-stage-lite0: the nodule heatmap (stage 1) and a patch "
                              "classifier trained on its candidates, hard negatives and "
                              "synthetic nodules (stage 2)")
def fit(view, out_dir: str | Path, config: Mapping | None = None, *, resume: bool = True,
        feature_cache: Mapping[str, dict] | None = None, log=print):
    """Train both stages on ``view``'s training part; score its validation part."""
    from lungcad.detection.second_stage import SecondStageSettings
    from lungcad.models.nodule_heatmap import score_features

    cfg = _config(config)
    stage1_cfg = {**cfg, "model": nodule_heatmap.ARCHITECTURE}
    refused = list(view.held_out)
    stage1 = nodule_heatmap._train(view.manifest, [view.task], list(view.train), stage1_cfg,
                                   feature_cache, log, refused=refused)
    network = train_second_stage(stage1, view.manifest, list(view.train), refused, cfg,
                                 feature_cache, log)
    val_feats = nodule_heatmap._features_for(stage1, view.manifest, list(view.val),
                                             int(cfg["image_size"]), feature_cache)
    val_scores = score_features(stage1, val_feats, nodule_heatmap._output(view.task))
    second = SecondStageSettings.from_mapping(cfg["second_stage"]).to_dict()
    return nodule_heatmap._trained_fold(
        network, {**cfg, "model_args": _model_args(cfg)}, view.task, view.manifest,
        len(view.train), val_scores, name=ARCHITECTURE, detection_extra={"second_stage": second})
