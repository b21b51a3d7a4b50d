"""Images and labels for one fold: datasets, radiograph-safe augmentation, the DataModule.

Images are read through :func:`lungcad.data.cache.load_resized` (cached, resized arrays in
[0, 1]); augmentation (training only) works on that [0, 1] image; the model's
:class:`~lungcad.preprocess.Preprocessing` then normalises it, exactly as at prediction time.
"""

from __future__ import annotations

from typing import Callable

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from lungcad.data.cache import load_resized
from lungcad.data.manifest import Manifest
from lungcad.preprocess import Preprocessing


def build_augmentation(options: dict) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """Random affine (small rotation, shear, scale, shift) then brightness and contrast.

    Works on a (1, H, W) float tensor in [0, 1] and returns one clamped to [0, 1]. No left-right
    flip unless ``hflip`` is set: a flipped chest puts the heart on the wrong side.
    """
    if not options.get("enabled", True):
        return None
    from torchvision.transforms import InterpolationMode, v2

    scale = options.get("scale") or [1.0, 1.0]
    translate = float(options.get("translate") or 0.0)
    steps: list = [v2.RandomAffine(degrees=float(options.get("rotation") or 0.0),
                                   translate=(translate, translate) if translate else None,
                                   scale=(float(scale[0]), float(scale[1])),
                                   shear=float(options.get("shear") or 0.0) or None,
                                   interpolation=InterpolationMode.BILINEAR, fill=0.0)]
    brightness, contrast = float(options.get("brightness") or 0), float(options.get("contrast") or 0)
    if brightness or contrast:
        steps.append(v2.ColorJitter(brightness=brightness or None, contrast=contrast or None))
    if options.get("hflip"):
        steps.append(v2.RandomHorizontalFlip())
    pipeline = v2.Compose(steps)

    def augment(image: torch.Tensor) -> torch.Tensor:
        return pipeline(image).clamp_(0.0, 1.0)

    return augment


class ImageDataset(Dataset):
    """(tensor (C, size, size), label) for each image: cached resize, augmentation, normalisation."""

    def __init__(self, manifest: Manifest, paths: list[str], labels: list[int],
                 preprocessing: Preprocessing, augment: Callable | None = None):
        self.manifest = manifest
        self.paths = list(paths)
        self.labels = list(labels)
        self.preprocessing = preprocessing
        self.augment = augment

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, index: int) -> np.ndarray:
        """The resized [0, 1] image, before augmentation and normalisation."""
        return load_resized(self.manifest.image_path(self.paths[index]), self.preprocessing.size)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.image(index)
        if self.augment is not None:
            image = self.augment(torch.tensor(image)[None])[0].numpy()
        source = str(self.manifest.image_path(self.paths[index]))
        return torch.from_numpy(self.preprocessing.apply(image, source)), self.labels[index]


def balanced_sampler(labels: list[int], num_classes: int, seed: int) -> WeightedRandomSampler:
    """Draw each class equally often (in expectation), as many draws per epoch as images."""
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    weights = 1.0 / counts[np.asarray(labels)]
    generator = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double), len(labels),
                                 replacement=True, generator=generator)


class FoldDataModule(L.LightningDataModule):
    """The training and validation parts of a :class:`~lungcad.data.splits.FoldView`."""

    def __init__(self, fold, preprocessing: Preprocessing, batch_size: int,
                 augment: dict, class_balance: str, num_workers: int, seed: int):
        super().__init__()
        self.fold = fold
        self.preprocessing = preprocessing
        self.batch_size = batch_size
        self.class_balance = class_balance
        self.num_workers = num_workers
        self.seed = seed
        self.train_labels = fold.labels("train")
        self.train_set = ImageDataset(fold.manifest, list(fold.train), self.train_labels,
                                      preprocessing, build_augmentation(augment))
        self.val_set = ImageDataset(fold.manifest, list(fold.val), fold.labels("val"),
                                    preprocessing)

    def _loader(self, dataset: ImageDataset, shuffle: bool, sampler=None) -> DataLoader:
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle and sampler is None,
                          sampler=sampler, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0,
                          pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        sampler = None
        if self.class_balance == "sampler":
            sampler = balanced_sampler(self.train_labels, len(self.fold.task.classes), self.seed)
        return self._loader(self.train_set, shuffle=True, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)
