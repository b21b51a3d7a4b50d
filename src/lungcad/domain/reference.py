"""A model's training inputs, summarised: the domain reference and its out-of-domain score.

The reference fits two Gaussians to the descriptors (:mod:`lungcad.domain.descriptors`) of the
model's training images, each descriptor first standardised by the training mean and spread:

- **layout**: a probabilistic-PCA Gaussian on all descriptors (the leading ``k`` principal
  directions each by its own variance, the rest of the space by the mean leftover variance):
  what the image shows and where;
- **statistics**: a full-covariance Gaussian (shrunk towards its diagonal) on the 15 global
  statistics (grey-level quantiles, mean, spread, noise and sharpness): how it was acquired.

Each part's squared Mahalanobis distance is divided by the 99th percentile of that part's
out-of-fold distances; the **score** is the larger of the two ratios (1.0: as far out as the
99th-percentile training image on that part). Higher means less like the training images.

The threshold is the ``quantile`` (99th percentile by default) of **out-of-fold** scores: each
training image scored by a reference fitted without the images of its own cross-validation fold,
so the threshold is never set on images the reference has seen, nor on the inputs it judges.

Stored as ``domain.npz`` in the model directory (a few tens of KB) with its summary in
model.json (``domain``: modality, threshold, quantile, the share of out-of-fold images flagged).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungcad.domain.descriptors import GLOBAL
from lungcad.errors import LungcadError

DOMAIN_FILE = "domain.npz"
DEFAULT_QUANTILE = 0.99
MAX_COMPONENTS = 24
SHRINK = 0.1  # statistics part: covariance shrunk this much towards its diagonal
_FIELDS = ("centre", "scale", "components", "variances", "stats_precision")


@dataclass
class DomainReference:
    size: int                   # the grid the descriptors are computed on (model input size)
    centre: np.ndarray          # (D,) training mean of the descriptors
    scale: np.ndarray           # (D,) training spread of the descriptors
    components: np.ndarray      # (k, D) leading principal directions (standardised space)
    variances: np.ndarray       # (k,) their variances
    residual_variance: float    # mean variance left outside them
    stats_precision: np.ndarray  # (G, G) inverse shrunk covariance of the global statistics
    part_scales: tuple[float, float] = (1.0, 1.0)  # out-of-fold 99% distance of each part
    threshold: float = float("inf")
    quantile: float = DEFAULT_QUANTILE

    def distances(self, descriptors: np.ndarray) -> np.ndarray:
        """(N, 2): squared Mahalanobis distances of the layout and statistics parts."""
        z = (np.atleast_2d(descriptors) - self.centre) / self.scale
        proj = z @ self.components.T
        leftover = np.maximum((z * z).sum(axis=1) - (proj * proj).sum(axis=1), 0.0)
        layout = ((proj * proj) / self.variances).sum(axis=1) + leftover / self.residual_variance
        g = z[:, GLOBAL]
        stats = np.einsum("ij,jk,ik->i", g, self.stats_precision, g)
        return np.stack([layout, stats], axis=1)

    def score(self, descriptors: np.ndarray) -> np.ndarray:
        """The larger of the two parts' distance ratios, per row of ``descriptors`` (N, D)."""
        return (self.distances(descriptors) / np.asarray(self.part_scales)).max(axis=1)

    def in_domain(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) <= self.threshold

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        arrays = {k: getattr(self, k).astype(np.float32) for k in _FIELDS}
        with open(path, "wb") as handle:
            np.savez_compressed(handle, size=self.size, residual_variance=self.residual_variance,
                                part_scales=np.asarray(self.part_scales, dtype=np.float64),
                                threshold=self.threshold, quantile=self.quantile, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "DomainReference":
        try:
            with np.load(path) as data:
                return cls(size=int(data["size"]),
                           **{k: data[k].astype(np.float64) for k in _FIELDS},
                           residual_variance=float(data["residual_variance"]),
                           part_scales=tuple(float(v) for v in data["part_scales"]),
                           threshold=float(data["threshold"]), quantile=float(data["quantile"]))
        except (OSError, KeyError, ValueError) as exc:
            raise LungcadError(f"{path}: not a readable domain reference ({exc}); add it again "
                               "with `lungcad calibrate`") from None


def fit_reference(descriptors: np.ndarray, size: int,
                  components: int | None = None) -> DomainReference:
    """The reference of ``descriptors`` (N, D) of training images (scales and threshold not
    yet set: :func:`fit_with_threshold` sets them out of fold)."""
    x = np.asarray(descriptors, dtype=np.float64)
    if len(x) < 8:
        raise LungcadError(f"a domain reference needs at least 8 training images, not {len(x)}")
    centre = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 1e-6, scale, 1.0)
    z = (x - centre) / scale
    k = components or max(2, min(MAX_COMPONENTS, len(x) // 8))
    k = min(k, z.shape[1] - 1, len(x) - 1)
    _, s, vt = np.linalg.svd(z, full_matrices=False)
    variances = s * s / max(len(x) - 1, 1)
    total = float((z * z).sum() / max(len(x) - 1, 1))
    leftover = max(total - float(variances[:k].sum()), 1e-9) / max(z.shape[1] - k, 1)
    kept = np.maximum(variances[:k], leftover)  # never narrower than the leftover
    g = z[:, GLOBAL]
    cov = np.cov(g.T) if len(g) > 1 else np.eye(g.shape[1])
    cov = (1 - SHRINK) * cov + SHRINK * np.diag(np.diag(cov)) + 1e-6 * np.eye(len(cov))
    return DomainReference(size=int(size), centre=centre, scale=scale, components=vt[:k],
                           variances=kept, residual_variance=float(leftover),
                           stats_precision=np.linalg.inv(cov))


def out_of_fold_distances(descriptors: np.ndarray, folds: np.ndarray, size: int) -> np.ndarray:
    """(N, 2): each image's part distances under a reference fitted without its own fold."""
    x = np.asarray(descriptors, dtype=np.float64)
    folds = np.asarray(folds)
    out = np.full((len(x), 2), np.nan)
    for fold in np.unique(folds):
        held = folds == fold
        out[held] = fit_reference(x[~held], size).distances(x[held])
    return out


def fit_with_threshold(descriptors: np.ndarray, folds: np.ndarray, size: int,
                       quantile: float = DEFAULT_QUANTILE) -> tuple[DomainReference, np.ndarray]:
    """The reference of all ``descriptors``; each part's scale the ``quantile`` of its
    out-of-fold distances, the threshold the ``quantile`` of the out-of-fold scores (returned)."""
    distances = out_of_fold_distances(descriptors, folds, size)
    scales = np.quantile(distances, quantile, axis=0)
    scales = np.where(scales > 0, scales, 1.0)
    oof = (distances / scales).max(axis=1)
    reference = fit_reference(descriptors, size)
    reference.part_scales = (float(scales[0]), float(scales[1]))
    reference.threshold = float(np.quantile(oof, quantile))
    reference.quantile = float(quantile)
    return reference, oof
