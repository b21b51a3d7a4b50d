"""Small segmentation models for the `lungcad segment` tests: a fixed 'dark pixels are lung'
network (its masks are known in advance), tiny untrained model directories, and a synthetic
frontal radiograph with two dark lungs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

SIDE = 64
MEAN, STD = 0.5, 0.25


class DarkPixels(torch.nn.Module):
    """Lung logit per pixel: high where the (un-normalised) image is darker than 0.3."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 40.0 * (0.3 - (x[:, :1] * STD + MEAN))


def spec(name: str = "jsrt-lungs"):
    from lungcad.model_dir import ModelSpec
    from lungcad.preprocess import Preprocessing

    return ModelSpec(name=name, architecture="lung-unet", task="jsrt-lungs",
                     classes=["background", "lung"],
                     preprocessing=Preprocessing(SIDE, 1, MEAN, STD), threshold=0.5,
                     modality="chest radiograph")


def dark_pixel_segmenter(name: str = "jsrt-lungs"):
    from lungcad.api import Model
    from lungcad.lung_model import LungModel

    return Model(LungModel(spec(name), DarkPixels()))  # the Python API's model


def save_untrained_segmenter(directory: Path, name: str = "jsrt-lungs") -> Path:
    from lungcad.model_dir import save_model_dir
    from lungcad.models import create_model

    torch.manual_seed(0)
    return save_model_dir(directory, create_model("lung-unet", num_classes=2), spec(name))


def save_untrained_classifier(directory: Path) -> Path:
    from lungcad.model_dir import ModelSpec, save_model_dir
    from lungcad.models import create_model
    from lungcad.preprocess import Preprocessing

    torch.manual_seed(0)
    classifier = ModelSpec(name="test-ct", architecture="ct-cnn", task="ct-normal-vs-abnormal",
                           classes=["normal", "abnormal"],
                           preprocessing=Preprocessing(SIDE, 1, MEAN, STD), threshold=0.5,
                           modality="ct")
    return save_model_dir(directory, create_model("ct-cnn", num_classes=2), classifier)


def two_lungs(height: int = 200, width: int = 160) -> np.ndarray:
    """A bright picture with two dark upright ellipses left and right of the centre."""
    y, x = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    image = 0.6 + 0.2 * y
    for cx in (0.3, 0.7):
        inside = ((x - cx) / 0.13) ** 2 + ((y - 0.5) / 0.3) ** 2 <= 1
        image[inside] = 0.15
    return image.astype(np.float32)


def write_png(array: np.ndarray, path: Path) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(array * 255).astype(np.uint8), mode="L").save(path)
    return path
