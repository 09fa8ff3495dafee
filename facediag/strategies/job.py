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

from facediag.core.crop import CropSpec
from facediag.core.labels import encode_labels
from facediag.models.feature_cache import FeatureCache, backbone_feature_cache
from facediag.preprocess.faces import Faces

# the precision of every pass whose numbers a run keeps (DTL2 features, DTL1's test scores): training may run in
# trainer.precision (bf16-mixed on a GPU), but these must match what applying the run computes (fp32, any device)
FULL_PRECISION = "32-true"


@dataclass
class Job:
    """One configured run, what ``strategy.fit(job)`` gets. ``faces(crop, crops=True, landmarks=False)``: the
    split's images that get the :class:`~facediag.core.crop.CropSpec` ``crop``, one
    :class:`~facediag.preprocess.faces.Faces` value (their split rows, crops and, when asked, landmarks in crop
    pixels)."""

    cfg: DictConfig
    out_dir: Path
    split: pd.DataFrame
    classes: list[str]
    positive: str | None
    faces: Callable[..., Faces]
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
    def backbone_crop(self) -> CropSpec:
        """The face crop the backbone was trained on (``backbone.align``)."""
        return CropSpec.of(self.cfg.backbone.align)

    def make_backbone(self, backbone: Any = None, weights: Any = None) -> Any:
        """The configured backbone (or the given ``backbone`` / ``weights`` nodes) with its verified weights."""
        from facediag.models import create_from_config

        backbone = backbone if backbone is not None else self.cfg.backbone
        return create_from_config(backbone, weights if weights is not None else self.cfg.weights)

    def feature_cache(
        self, backbone: Any = None, weights: Any = None, mirrored: bool = False, region: Any = None
    ) -> FeatureCache:
        """Features keyed by backbone, weights (+ pinned file), feature layer, preprocessing and crop.

        ``backbone`` / ``weights``: config nodes of another pair than the run's own (fused DTL2 sources);
        ``mirrored``: the features of the mirrored crops (a fused source's ``flip``), cached apart; ``region``:
        (x0, y0, x1, y1) fractions, the features of a region view (a fused source's ``region``), cached apart.
        """
        nodes = {
            "backbone": backbone if backbone is not None else self.cfg.backbone,
            "weights": weights if weights is not None else self.cfg.weights,
            "preprocess": self.cfg.preprocess,
        }
        return backbone_feature_cache(
            self.cfg.paths.cache_dir, **{k: OmegaConf.to_container(v, resolve=True) for k, v in nodes.items()},
            mirrored=mirrored, region=region,
        )

    def augment(self) -> list[Any]:
        """Instantiated albumentations transforms of ``data.augment`` (training only; none by default)."""
        return [instantiate(t) for t in (self.cfg.data.get("augment") or [])]
