"""Training-time augmentation: small, radiograph-safe, in [0, 1], never on validation images."""

from __future__ import annotations

import numpy as np
import torch

from lungcad.training.lightning_config import DEFAULT_AUGMENT
from lungcad.training.data import build_augmentation


def test_augmentation_changes_images_stays_in_range_and_does_not_flip():
    torch.manual_seed(0)
    augment = build_augmentation(DEFAULT_AUGMENT)
    image = torch.zeros(1, 64, 64)
    image[:, 20:44, 4:20] = 0.8  # a bright block on the left
    outs = [augment(image.clone()) for _ in range(20)]
    assert any(not torch.allclose(o, image) for o in outs)
    for out in outs:
        assert out.shape == image.shape and out.min() >= 0 and out.max() <= 1
        left, right = out[..., :32].sum(), out[..., 32:].sum()
        assert left > 3 * right  # the block stays on its side: no left-right flip


def test_augmentation_off_and_hflip_on():
    assert build_augmentation({**DEFAULT_AUGMENT, "enabled": False}) is None
    torch.manual_seed(0)
    flips = build_augmentation({"enabled": True, "rotation": 0, "shear": 0, "scale": [1, 1],
                                "translate": 0, "brightness": 0, "contrast": 0, "hflip": True})
    image = torch.zeros(1, 32, 32)
    image[..., :8] = 1.0
    flipped = [bool(flips(image.clone())[..., -8:].mean() > 0.9) for _ in range(30)]
    assert 0 < sum(flipped) < 30


def test_validation_dataset_has_no_augmentation(tmp_path, monkeypatch):
    from training_data import make_dataset

    from lungcad.preprocess import Preprocessing
    from lungcad.data.splits import load_fold
    from lungcad.training.data import FoldDataModule

    monkeypatch.setenv("LUNGCAD_CACHE_DIR", str(tmp_path / "cache"))
    dataset, split = make_dataset(tmp_path / "d", n=12, size=32)
    fold = load_fold(dataset, split, "jsrt-malignant", 0)
    dm = FoldDataModule(fold, Preprocessing(32, 1, 0.5, 0.25), 4, DEFAULT_AUGMENT, "none", 0, 0)
    assert dm.val_set.augment is None and dm.train_set.augment is not None
    a, b = dm.val_set[0][0], dm.val_set[0][0]
    assert torch.equal(a, b)
    expected = Preprocessing(32, 1, 0.5, 0.25).apply(dm.val_set.image(0))
    assert np.allclose(a.numpy(), expected)
