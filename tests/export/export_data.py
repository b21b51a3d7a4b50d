"""Small untrained model directories and synthetic images for the export tests (random weights:
equivalence of runtimes is tested, not accuracy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SIDE = 64  # small input: every registered architecture accepts 64 px (a multiple of 32)
CARD = "# Test model\n\nRandom weights; exported in a test.\n"


def architecture_args(architecture: str) -> dict:
    """Offline and fast: no pretrained weights for the architectures that have them."""
    from lungcad.models import model_info

    return {"pretrained": False} if "pretrained" in model_info(architecture).defaults else {}


def make_model_dir(directory: Path, architecture: str = "ct-cnn", task: str = "jsrt-malignant",
                   classes: tuple[str, ...] = ("rest", "malignant"), side: int = SIDE,
                   threshold: float | None = 0.4, seed: int = 0, card: str | None = CARD) -> Path:
    import torch

    from lungcad.model_dir import ModelSpec, save_model_dir
    from lungcad.models import create_model, model_info
    from lungcad.preprocess import Preprocessing

    torch.manual_seed(seed)
    args = architecture_args(architecture)
    network = create_model(architecture, num_classes=len(classes), **args)
    info = model_info(architecture)
    spec = ModelSpec(name=f"test-{architecture}", architecture=architecture, task=task,
                     classes=list(classes), architecture_args=args, threshold=threshold,
                     preprocessing=Preprocessing(size=side, channels=1, mean=info.mean,
                                                 std=info.std),
                     threshold_rule="test value", modality="radiograph", version="2")
    return save_model_dir(directory, network, spec, card=card)


def random_images(n: int, seed: int = 0) -> list[np.ndarray]:
    """Images of different shapes in [0, 1], as lungcad.io.load_image returns them."""
    rng = np.random.default_rng(seed)
    shapes = [(80, 80), (100, 72), (64, 96), (128, 128)]
    out = []
    for i in range(n):
        h, w = shapes[i % len(shapes)]
        ramp = np.linspace(0, 1, w, dtype=np.float32)[None, :]
        out.append(np.clip(0.5 * rng.random((h, w), dtype=np.float32) + 0.5 * ramp, 0, 1))
    return out
