"""What a strategy gets from the training job: the data, aligned crops, the backbone and a Trainer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from facediag.feature_cache import FeatureCache, backbone_feature_cache
from facediag.labels import encode_labels


@dataclass
class Job:
    """One configured run. ``crops(size, template, padding)`` → (split rows that have a face, uint8 crops)."""

    cfg: DictConfig
    out_dir: Path
    split: pd.DataFrame
    classes: list[str]
    positive: str | None
    crops: Callable[[int, str, float], tuple[pd.DataFrame, np.ndarray]]
    make_trainer: Callable[..., pl.Trainer]
    tb_logger: Any = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def seed(self) -> int:
        return int(self.cfg.seed)

    def targets(self, rows: pd.DataFrame) -> np.ndarray:
        """Class indices of ``rows``' labels."""
        return encode_labels(rows["label"], self.classes)

    @property
    def loader_options(self) -> dict[str, int]:
        """``batch_size`` and ``num_workers`` of every DataLoader (``data.batch_size``, ``data.num_workers``)."""
        return {"batch_size": int(self.cfg.data.batch_size), "num_workers": int(self.cfg.data.num_workers)}

    @property
    def backbone_crop(self) -> tuple[int, str, float]:
        """(size, template, padding) of the face crop the backbone was trained on."""
        align = self.cfg.backbone.align
        return int(align.size), str(align.template), float(align.padding)

    def make_backbone(self) -> Any:
        """The configured backbone with its verified pretrained weights."""
        from facediag.models import create_from_config

        return create_from_config(
            OmegaConf.to_container(self.cfg.backbone, resolve=True),
            OmegaConf.to_container(self.cfg.weights, resolve=True),
        )

    def feature_cache(self) -> FeatureCache:
        """Features keyed by backbone, weights (+ pinned file), feature layer, preprocessing and crop."""
        groups = ("backbone", "weights", "preprocess")
        return backbone_feature_cache(
            self.cfg.paths.cache_dir, **{k: OmegaConf.to_container(self.cfg[k], resolve=True) for k in groups}
        )

    def augment(self) -> list[Any]:
        """Instantiated albumentations transforms of ``data.augment`` (training only; none by default)."""
        return [instantiate(t) for t in (self.cfg.data.get("augment") or [])]
