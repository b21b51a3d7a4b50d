"""Images and labels for one fold: datasets, radiograph-safe augmentation, the DataModule.

Images are read through :func:`lungcad.data.cache.load_resized` (cached, resized arrays in
[0, 1]); augmentation (training only) works on that [0, 1] image; the model's
:class:`~lungcad.preprocess.Preprocessing` then normalises it, exactly as at prediction time.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from lungcad.data.cache import load_resized
from lungcad.data.manifest import Manifest
from lungcad.data.tasks import Task, get_task
from lungcad.errors import LungcadError
from lungcad.preprocess import Preprocessing


@dataclass
class FoldData:
    """The train and validation parts of one fold, with labels mapped to the task's classes."""

    manifest: Manifest
    task: Task
    split_path: Path
    split_sha256: str
    fold: int
    n_folds: int
    train_paths: list[str]
    train_labels: list[int]
    val_paths: list[str]
    val_labels: list[int]

    def class_counts(self, labels: list[int]) -> dict[str, int]:
        counts = np.bincount(np.asarray(labels, dtype=int), minlength=len(self.task.classes))
        return {c: int(n) for c, n in zip(self.task.classes, counts)}


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _labelled(manifest: Manifest, task: Task, paths: list[str], part: str) -> tuple[list[str], list[int]]:
    rows = manifest.rows_for(paths)
    mapped = task.map_labels(rows["label"])
    keep = mapped.notna().to_numpy()
    if not keep.all():
        # a split made for a wider task may hold images this task has no class for
        rows = rows[keep].reset_index(drop=True)
    if rows.empty:
        raise LungcadError(f"the {part} part of the split has no image with a class of task {task.name}")
    return rows["path"].tolist(), task.class_index(rows["label"])


def load_fold(dataset: str | Path, split_path: str | Path, task_name: str, fold: int) -> FoldData:
    """Manifest + split file + task -> the fold's train and validation images and labels."""
    from lungcad.data.splits import load_split

    manifest = Manifest.load(dataset)
    task = get_task(task_name)
    split_path = Path(split_path)
    if not split_path.is_file():
        raise LungcadError(f"split file not found: {split_path} (make one with `lungcad data split`, "
                           "or pass --split)")
    split = load_split(split_path)
    wanted = getattr(split, "manifest_sha256", None)
    if wanted is None:
        wanted = json.loads(split_path.read_text()).get("manifest_sha256")
    if wanted and wanted != manifest.sha256():
        raise LungcadError(
            f"{split_path} was made for a labels.csv with sha256 {wanted[:12]}..., but "
            f"{manifest.root / 'labels.csv'} has {manifest.sha256()[:12]}...; make the split "
            "again for this dataset (lungcad data split) or point --data at the right folder")
    if not 0 <= fold < split.n_folds:
        raise LungcadError(f"fold {fold} does not exist in {split_path} (folds 0 to {split.n_folds - 1})")
    train_paths, train_labels = _labelled(manifest, task, list(split.part(fold, "train")), "train")
    val_paths, val_labels = _labelled(manifest, task, list(split.part(fold, "val")), "val")
    overlap = set(train_paths) & set(val_paths)
    if overlap:
        raise LungcadError(f"{split_path}: fold {fold} has {len(overlap)} image(s) in both train "
                           f"and val, e.g. {sorted(overlap)[:2]}")
    task.check_labels(manifest.rows_for(train_paths)["label"])
    return FoldData(manifest, task, split_path, file_sha256(split_path), fold, split.n_folds,
                    train_paths, train_labels, val_paths, val_labels)


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
    def __init__(self, fold: FoldData, preprocessing: Preprocessing, batch_size: int,
                 augment: dict, class_balance: str, num_workers: int, seed: int):
        super().__init__()
        self.fold = fold
        self.preprocessing = preprocessing
        self.batch_size = batch_size
        self.class_balance = class_balance
        self.num_workers = num_workers
        self.seed = seed
        self.train_set = ImageDataset(fold.manifest, fold.train_paths, fold.train_labels,
                                      preprocessing, build_augmentation(augment))
        self.val_set = ImageDataset(fold.manifest, fold.val_paths, fold.val_labels, preprocessing)

    def _loader(self, dataset: ImageDataset, shuffle: bool, sampler=None) -> DataLoader:
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle and sampler is None,
                          sampler=sampler, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0,
                          pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        sampler = None
        if self.class_balance == "sampler":
            sampler = balanced_sampler(self.fold.train_labels, len(self.fold.task.classes), self.seed)
        return self._loader(self.train_set, shuffle=True, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)
