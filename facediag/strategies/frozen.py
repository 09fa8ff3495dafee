"""The one frozen-feature path of DTL2 and fused DTL2: a CNN's features of a job's crops, over the per-image cache.

Cached images are read (a warm cache needs neither the CNN nor a predict pass); the misses go through a
Lightning ``predict`` pass in full precision on one device, and are stored. The backbone is built only when an
image is missing from the cache.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from facediag.data.datamodule import FaceCrops
from facediag.models.feature_cache import FeatureCache
from facediag.strategies.job import FULL_PRECISION, Job


class FrozenFeatures(pl.LightningModule):
    """predict_step → (features, row indices); the backbone is built lazily, only for cache misses."""

    def __init__(self, make_backbone: Callable[[], torch.nn.Module], cache: FeatureCache, digests: np.ndarray):
        super().__init__()
        self.make_backbone = make_backbone
        self.cache = cache
        self.digests = digests
        self.backbone: torch.nn.Module | None = None
        self.cnn_images = 0

    def _net(self) -> torch.nn.Module:
        if self.backbone is None:
            self.backbone = self.make_backbone().to(self.device).eval()
            self.backbone.requires_grad_(False)
        return self.backbone

    @torch.no_grad()
    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> tuple[np.ndarray, np.ndarray]:
        images, _, rows = batch
        rows = rows.cpu().numpy()

        def compute(todo: list[int]) -> np.ndarray:
            net = self._net()
            self.cnn_images += len(todo)
            return net.features(net.preprocess(images[todo], device=self.device)).float().cpu().numpy()

        return np.stack(self.cache.features(self.digests[rows], compute)), rows


def feature_trainer(job: Job, callbacks: Sequence[pl.Callback] = ()) -> pl.Trainer:
    """The Trainer of a frozen-feature predict pass: one device, in this process (the SVM needs every image's
    features: no sharding across ranks), full precision on every device (the per-image cache holds the same
    features for CPU and GPU runs)."""
    return job.make_trainer(callbacks=list(callbacks), enable_checkpointing=False, enable_progress_bar=False,
                            devices=1, strategy="auto", num_nodes=1, precision=FULL_PRECISION)


def frozen_features(
    job: Job, backbone: Any, weights: Any, rows: pd.DataFrame, crops: np.ndarray, mirrored: bool = False,
    region: Sequence[float] | None = None,
) -> tuple[np.ndarray, int]:
    """float32 features of ``rows`` (``crops[i]`` is row i's crop) by the ``backbone`` × ``weights`` config nodes,
    from that pair's per-image cache (the CNN runs only for misses), and the number of images the CNN computed.
    ``mirrored`` / ``region``: ``crops`` are the mirrored crops / that region view (caches of their own)."""
    cache, digests = job.feature_cache(backbone, weights, mirrored, region), rows["sha256"].to_numpy(dtype=str)
    cached = cache.stacked(digests)
    if cached is not None:  # a warm cache: no CNN, no predict pass
        return cached, 0
    module = FrozenFeatures(lambda: job.make_backbone(backbone, weights), cache, digests)
    loader = DataLoader(FaceCrops(crops, job.targets(rows), np.arange(len(rows)), None), shuffle=False,
                        **job.loader_options)
    outputs = feature_trainer(job).predict(module, dataloaders=loader, return_predictions=True)
    features = np.concatenate([f for f, _ in outputs])[np.argsort(np.concatenate([r for _, r in outputs]))]
    return features.astype(np.float32), module.cnn_images

