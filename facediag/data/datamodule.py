"""LightningDataModule serving aligned face crops per role (train / val / test) of a split."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from facediag.core.labels import encode_labels
from facediag.data.splits import TEST, TRAIN, VAL

if TYPE_CHECKING:  # albumentations is imported only where augmentations are built (DTL1 with data.augment)
    import albumentations as A


class FaceCrops(Dataset):
    """uint8 RGB crops (N, H, W, 3) + class indices; returns (HWC uint8 tensor, target, row index)."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, rows: np.ndarray, transform: A.Compose | None):
        self.images, self.targets, self.rows, self.transform = images, targets, rows, transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image=image)["image"]
        return torch.from_numpy(np.ascontiguousarray(image)), int(self.targets[index]), int(self.rows[index])


class FaceDataModule(pl.LightningDataModule):
    """Serves the rows of ``split`` whose crop exists (``images[i]`` belongs to ``split.iloc[i]``).

    Augmentations (albumentations) apply to the training role only; none by default, as in the paper.
    """

    def __init__(
        self,
        split: pd.DataFrame,
        images: np.ndarray,
        classes: Sequence[str],
        batch_size: int = 32,
        num_workers: int = 0,
        augment: A.Compose | None = None,
        seed: int = 0,
    ):
        super().__init__()
        if len(split) != len(images):
            raise ValueError(f"{len(split)} split rows but {len(images)} crops")
        self.split = split.reset_index(drop=True)
        self.images = images
        self.classes = list(classes)
        self.targets = encode_labels(self.split["label"], self.classes)
        self.batch_size, self.num_workers, self.augment, self.seed = batch_size, num_workers, augment, seed

    def rows(self, role: str) -> np.ndarray:
        """Positions (into ``split``) of the rows with ``role``."""
        return np.flatnonzero(self.split["role"].to_numpy() == role)

    def dataset(self, role: str, augment: bool = False) -> FaceCrops:
        rows = self.rows(role)
        return FaceCrops(self.images[rows], self.targets[rows], rows, self.augment if augment else None)

    def _loader(self, role: str, shuffle: bool) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        dataset = self.dataset(role, augment=role == TRAIN)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            generator=generator,
            persistent_workers=self.num_workers > 0,
            drop_last=role == TRAIN and len(dataset) % self.batch_size == 1,  # no 1-sample batch for BatchNorm
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(TRAIN, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(VAL, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(TEST, shuffle=False)


def build_augment(transforms: Sequence[A.BasicTransform] | None) -> A.Compose | None:
    """Compose instantiated albumentations transforms from config; None (the paper's default) when empty."""
    if not transforms:
        return None
    import albumentations

    return albumentations.Compose(list(transforms))
