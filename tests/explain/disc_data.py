"""Synthetic images whose only signal is a bright disc, and a small CNN that learns to find it."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

SIDE = 64  # image side in pixels


@dataclass
class DiscSet:
    images: np.ndarray   # (N, side, side) float32 in [0, 1]
    labels: np.ndarray   # (N,) 1 = disc present
    centres: np.ndarray  # (N, 2) disc centre (x = column, y = row); NaN without a disc
    radii: np.ndarray    # (N,) disc radius in px; NaN without a disc


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(rng.normal(size=shape), sigma=3)
    return field / (field.std() + 1e-8)


def disc_image(rng: np.random.Generator, shape: tuple[int, int], centre: tuple[float, float] | None,
               radius: float) -> np.ndarray:
    """Textured background (0.4 +- 0.08, plus pixel noise); a soft-edged disc adds 0.35."""
    h, w = shape
    image = 0.4 + 0.08 * smooth_noise(rng, shape) + 0.03 * rng.normal(size=shape)
    if centre is not None:
        yy, xx = np.mgrid[0:h, 0:w]
        distance = np.hypot(xx - centre[0], yy - centre[1])
        image += 0.35 * np.clip(radius + 0.5 - distance, 0.0, 1.0)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def make_disc_set(n: int, seed: int, side: int = SIDE, positive_fraction: float = 0.5,
                  radius_range: tuple[float, float] = (4.0, 7.0)) -> DiscSet:
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < positive_fraction).astype(np.int64)
    images, centres, radii = [], [], []
    for label in labels:
        if label:
            r = rng.uniform(*radius_range)
            c = tuple(rng.uniform(r + 2, side - r - 3, size=2))
        else:
            r, c = float("nan"), None
        images.append(disc_image(rng, (side, side), c, r))
        centres.append(c if c is not None else (np.nan, np.nan))
        radii.append(r)
    return DiscSet(np.stack(images), labels, np.array(centres, float), np.array(radii, float))


def disc_network():
    """Three conv blocks (BatchNorm and Dropout included, to check they run in eval mode), global
    max pool, one logit. The last conv is the saliency layer (an unregistered architecture, so
    lungcad picks the last Conv2d)."""
    from torch import nn

    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 8, 3, padding=1), bn1=nn.BatchNorm2d(8), relu1=nn.ReLU(inplace=True),
        pool1=nn.MaxPool2d(2),
        conv2=nn.Conv2d(8, 16, 3, padding=1), bn2=nn.BatchNorm2d(16), relu2=nn.ReLU(inplace=True),
        pool2=nn.MaxPool2d(2),
        conv3=nn.Conv2d(16, 32, 3, padding=1), relu3=nn.ReLU(inplace=True),
        drop=nn.Dropout(0.2), gmp=nn.AdaptiveMaxPool2d(1), flat=nn.Flatten(),
        out=nn.Linear(32, 1)))


def train_binary(network, images: np.ndarray, labels: np.ndarray, preprocess, epochs: int = 8,
                 lr: float = 3e-3, batch_size: int = 32, seed: int = 0):
    """A plain torch loop (BCE on the one logit); returns the network in eval mode."""
    import torch

    torch.manual_seed(seed)
    x = torch.from_numpy(np.stack([preprocess(im) for im in images]))
    y = torch.from_numpy(labels.astype(np.float32))[:, None]
    optimiser = torch.optim.Adam(network.parameters(), lr=lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    generator = torch.Generator().manual_seed(seed)
    network.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=generator).split(batch_size):
            optimiser.zero_grad()
            loss_fn(network(x[idx]), y[idx]).backward()
            optimiser.step()
    return network.eval()
