"""Trainer ct_finetune: the cached frozen part plus the trained tail is the network itself, and
the trainer runs end to end through lungcad experiment (synthetic data, 2 tiny folds)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lungcad.cli import main
from lungcad.training import ct_finetune

SUITE = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_suite.py"


def test_frozen_then_tail_equals_the_whole_network():
    network = ct_finetune.build_network(3, 14, 0.3).eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.inference_mode():
        split = ct_finetune.tail_forward(network.backbone,
                                         ct_finetune.frozen_forward(network.backbone, x, 14), 14)
        whole = network(x)
    assert torch.allclose(split, whole, atol=1e-5)
    trainable = {n.split(".")[1] for n, p in network.named_parameters() if p.requires_grad}
    assert "_conv_stem" not in trainable and "_fc" in trainable


def test_views_are_seeded_and_normalised_like_the_slice():
    image = np.random.default_rng(0).uniform(-1, 1, (1, 64, 64)).astype(np.float32)
    a = ct_finetune.view_images(image, 2, 7, 0.5, 0.5)
    b = ct_finetune.view_images(image, 2, 7, 0.5, 0.5)
    assert len(a) == 4 and all(v.shape == image.shape for v in a)
    assert np.array_equal(a[1], image[..., ::-1]) and np.allclose(a[3], b[3])
    assert all(-1.0001 <= v.min() and v.max() <= 1.0001 for v in a)


def test_ct_finetune_experiment_and_final(tmp_path, monkeypatch):
    monkeypatch.setenv("LUNGCAD_CACHE_DIR", str(tmp_path / "cache"))
    spec = importlib.util.spec_from_file_location("gpu_suite", SUITE)
    suite = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(suite)
    data, split = suite.make_smoke_dataset(tmp_path / "ct", "ct3", "iqothnccd-3class")
    config = tmp_path / "c.yaml"
    config.write_text(f"trainer: ct_finetune\ndataset: {data}\nsplit: {split}\n"
                      "task: iqothnccd-3class\nimage_size: 64\nepochs: 2\nbatch_size: 8\n"
                      "jitter_views: 1\ntorch_threads: 1\n")
    out = tmp_path / "exp"
    assert main(["experiment", str(config), "--out", str(out), "--bootstrap", "0"]) == 0
    assert main(["experiment", str(config), "--out", str(out), "--bootstrap", "0", "--final",
                 "--name", "tiny"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_out_of_fold"] == 18
    model = json.loads((out / "final" / "model" / "model.json").read_text())
    assert model["architecture"] == "efficientnet-lite0"
    cached = list((tmp_path / "cache" / "ct-finetune-views").rglob("*.npy"))
    assert len(cached) == 18 * 3  # every slice, 3 views, computed once for folds and final
    assert main(["predict", str(out / "final" / "model"), str(data / "images" / "benign_00.png")]) == 0
