"""A small nodule detector model directory for tests (serving, demo, explain): the real
``nodule-heatmap-lite0`` architecture (ImageNet Lite0 weights, installed offline), untrained head
whose nodule bias is raised so that cells fire, at 128 px so that it runs fast on a CPU.

Detection uses the installed lung segmenter where there is one; :func:`no_lung_model` turns that
off (synthetic test pictures are not chest radiographs: their lung masks would hide every mark).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

DETECTOR_NAME = "test-nodules"
DETECTOR_SIDE = 128


def detector_network(seed: int = 0, nodule_bias: float = 1.0):
    import torch

    from lungcad.models import create_model

    torch.manual_seed(seed)
    network = create_model("nodule-heatmap-lite0", 2, head_channels=8)
    with torch.no_grad():
        network.cells.bias.copy_(torch.tensor([nodule_bias, 0.0]))
    return network.eval()


# an age/sex model as experiment --final fits one (lungcad.detection.clinical.ClinicalModel)
CLINICAL = {"intercept": -1.0, "coef_score": 1.0, "coef_age": 0.5, "coef_male": 0.3,
            "mean_age": 55.0, "share_male": 0.5, "n_fitted": 100}


def save_detector_dir(directory: Path, name: str = DETECTOR_NAME, seed: int = 0,
                      clinical: dict | None = None) -> Path:
    from lungcad.model_dir import ModelSpec, save_model_dir
    from lungcad.models.efficientnet_lite import LITE_MEAN, LITE_STD
    from lungcad.preprocess import Preprocessing

    spec = ModelSpec(name=name, architecture="nodule-heatmap-lite0", task="jsrt-nodule",
                     classes=["no_nodule", "nodule"],
                     preprocessing=Preprocessing(DETECTOR_SIDE, 1, LITE_MEAN, LITE_STD),
                     threshold=0.5, threshold_rule="test value", weights_base="pretrained",
                     architecture_args={"head_channels": 8, "output": "nodule"},
                     modality="chest radiograph", version="2",
                     detection={"marks": {"peaks": 5, "min_distance_mm": 40.0},
                                **({"clinical": clinical} if clinical else {})})
    return save_model_dir(directory, detector_network(seed), spec,
                          card="# Test detector\n\nUntrained head: marks are meaningless.\n")


def chest_png(path: Path, height: int, width: int, seed: int = 0) -> Path:
    """:func:`pictures.synthetic_image` written to ``path`` as an 8-bit gray PNG."""
    import numpy as np
    from PIL import Image

    from pictures import synthetic_image

    image = synthetic_image(height, width, seed)
    Image.fromarray(np.round(image * 255).astype(np.uint8), mode="L").save(path)
    return path


@contextlib.contextmanager
def no_lung_model():
    """Detection without a lung mask (every cell allowed) while the block runs."""
    import pytest

    import lungcad.detection.detect as detect_module

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(detect_module, "bundled_lung_model", lambda: None)
        yield
