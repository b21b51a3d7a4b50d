"""The two-stage detector: trained fold by fold on training images only, saved and reloaded,
its marks the stage-1 candidates re-scored by the patch classifier and fused."""

from __future__ import annotations

import json

import numpy as np
import pytest
from nodule_scenes import SIDE, jsrt_like, spy_on_training_images

from lungcad.data.manifest import Manifest
from lungcad.data.splits import FoldView
from lungcad.data.tasks import get_task
from lungcad.detection.second_stage import SecondStageSettings, fuse, keep_apart
from lungcad.errors import LungcadError
from lungcad.findings import Finding

CONFIG = {"image_size": SIDE, "epochs": 1, "batch_size": 4, "crop_cells": 4,
          "model_args": {"pretrained": False, "head_channels": 8}, "torch_threads": 1,
          "second_stage": {"candidates": 6, "candidate_distance_mm": 10.0},
          "patch_model": {"kind": "cnn", "side": 16, "context_mm": [24.0, 48.0],
                          "widths": [8, 16]},
          "patch_training": {"steps": 6, "batch_size": 8},
          "patch_samples": {"negatives": "hard", "synthetic_copies": 1},
          "marks": {"peaks": 3, "min_distance_mm": 20.0, "lung_margin_mm": 20.0}}


def test_a_two_stage_fold_trains_on_training_images_only_and_marks_by_fused_scores(
        tmp_path, monkeypatch):
    import torch

    from lungcad.detection.detect import detect
    from lungcad.inference import load_model
    from lungcad.io import load_image
    from lungcad.training.fit import finish
    from lungcad.training.two_stage import fit

    paths = jsrt_like(tmp_path / "data")
    read = spy_on_training_images(monkeypatch)
    view = FoldView(Manifest.load(tmp_path / "data"), get_task("jsrt-nodule"), 0, 1,
                    tuple(paths[:6]), (paths[6], paths[8]), (paths[7],))
    lines: list[str] = []
    trained = fit(view, tmp_path / "run", CONFIG, log=lines.append)
    assert read and set(read) <= set(view.train)                  # never a held-out image
    assert any(line.startswith("second stage:") for line in lines)
    model_dir = finish(trained, view, tmp_path / "run", "youden")
    spec = json.loads((model_dir / "model.json").read_text())
    assert spec["architecture"] == "nodule-two-stage-lite0"
    assert spec["detection"]["second_stage"] == {"candidates": 6, "candidate_distance_mm": 10.0}
    assert spec["architecture_args"]["patch_kind"] == "cnn"

    model = load_model(model_dir)
    assert model.kind == "detector"
    image = load_image(tmp_path / "data" / paths[7]).array
    found = detect(model, image, lungs=None)
    assert 1 <= len(found.findings) <= 3
    scores = [f.score for f in found.findings]
    assert scores == sorted(scores, reverse=True)
    # each mark's score is the geometric mean of its map score and its patch score
    network = model.network
    prepared = model.prepare(image, "image")
    size = prepared.shape[-1]
    for mark in found.findings:
        row, col = int(mark.y * size / image.shape[0]) // 16, int(mark.x * size / image.shape[1]) // 16
        p1 = float(found.nodule_map[row, col])
        p2 = float(network.candidate_scores(torch.from_numpy(prepared[0]),
                                            np.array([[mark.x * size / image.shape[1],
                                                       mark.y * size / image.shape[0]]]),
                                            found.mm_per_pixel * image.shape[1] / size)[0])
        assert mark.score == pytest.approx(np.sqrt(p1 * p2), rel=1e-5)
    # what stage 2 looked at: stage 1's candidates, strongest map score first, each with its P2
    assert 1 <= len(found.candidates) <= 6 and len(found.candidate_p2) == len(found.candidates)
    p1s = [c.score for c in found.candidates]
    assert p1s == sorted(p1s, reverse=True)
    best = int(np.argmax(fuse(p1s, found.candidate_p2)))
    assert found.findings[0].score == pytest.approx(np.sqrt(p1s[best] * found.candidate_p2[best]))
    # looking at fewer candidates looks at the first of the same list
    fewer = detect(model, image, lungs=None, second_stage={"candidates": 2})
    assert [(c.x, c.y) for c in fewer.candidates] == [(c.x, c.y) for c in found.candidates[:2]]
    assert np.allclose(fewer.candidate_p2, found.candidate_p2[:2], atol=1e-6)
    with pytest.raises(LungcadError, match="unknown second-stage setting"):
        detect(model, image, lungs=None, second_stage={"candidate": 2})
    # the image-level output is stage 1's: the strongest cell
    probs = model.predict_proba([image])[0]
    assert probs[1] == pytest.approx(found.nodule_map.max(), rel=1e-4)


def test_second_stage_pieces():
    assert np.allclose(fuse([0.25, 1.0], [1.0, 0.36]), [0.5, 0.6])
    marks = [Finding(0, 0, 5, 0.9), Finding(5, 0, 5, 0.8), Finding(40, 0, 5, 0.7),
             Finding(80, 0, 5, 0.1)]
    kept = keep_apart(marks, 1.0, 20.0, peaks=5, min_score=0.2)
    assert [(m.x, m.score) for m in kept] == [(0, 0.9), (40, 0.7)]
    assert len(keep_apart(marks, 1.0, 0.0, peaks=2)) == 2
    with pytest.raises(LungcadError, match="unknown second-stage setting"):
        SecondStageSettings.from_mapping({"candidate": 3})
    with pytest.raises(LungcadError, match="out of range"):
        SecondStageSettings.from_mapping({"candidates": 0})


def test_the_trainer_refuses_other_networks_and_unknown_negatives():
    from lungcad.training.two_stage import _config

    with pytest.raises(LungcadError, match="trains nodule-two-stage-lite0"):
        _config({"model": "nodule-heatmap-lite0"})
    with pytest.raises(LungcadError, match="negatives"):
        _config({"patch_samples": {"negatives": "easy"}})


def test_a_final_two_stage_model_trains_on_every_image_with_synthetic_nodules(tmp_path):
    """``lungcad experiment --final`` trains on the whole dataset, whose validation part is
    its training part: nothing is held out, so the simulator may use every image."""
    from lungcad.data.splits import whole_dataset
    from lungcad.training.two_stage import fit

    paths = jsrt_like(tmp_path / "data")
    view = whole_dataset(Manifest.load(tmp_path / "data"), get_task("jsrt-nodule"))
    assert view.held_out == ()
    fold = FoldView(view.manifest, view.task, 0, 1, tuple(paths[:6]), (paths[6], paths[0]),
                    (paths[7],))
    assert fold.held_out == (paths[6], paths[7])   # a training image is never held out
    lines: list[str] = []
    trained = fit(view, tmp_path / "run", CONFIG, log=lines.append)
    assert any(line.startswith("synthetic nodules:") for line in lines)
    assert trained.spec.architecture == "nodule-two-stage-lite0"
