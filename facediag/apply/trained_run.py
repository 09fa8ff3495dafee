"""Apply a finished run to new images: the run's preprocessing, crop and model, whatever its strategy.

Everything comes from what the run dir records, never from defaults: ``run_config.yaml`` (preprocessing,
backbone, weights, strategy hyper-parameters) and ``metrics.json`` (classes, variants, the strategy's model
files). The strategy's Predictor (:mod:`facediag.strategies.predictor`), found through the strategy registry
from the run config's ``strategy``, does the scoring. Imports stay light: DTL2 and DSIFT runs never import
Lightning, Hydra, matplotlib or scipy.stats (DTL1 needs Lightning to rebuild its module).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facediag.core.crop import CropSpec
from facediag.strategies.predictor import TTA, Predictor, Scored, load_predictor

__all__ = ["TTA", "Scored", "TrainedRun", "build"]


def build(node: Any) -> Any:
    """Objects from a ``_target_`` config (nested dicts and lists), like hydra.utils.instantiate but without
    importing Hydra (~0.3 s of a one-photo prediction)."""
    if isinstance(node, list):
        return [build(item) for item in node]
    if not isinstance(node, dict):
        return node
    values = {k: build(v) for k, v in node.items() if not k.startswith("_")}
    if "_target_" not in node:
        return values
    module, _, name = str(node["_target_"]).rpartition(".")
    return getattr(importlib.import_module(module), name)(**values)


class TrainedRun:
    """A run dir of `train.py` turned back into a classifier: its Predictor (``predictor``) with the run's
    preprocessing. ``variant``: one of the run's ``variants`` (default its first, the one at the top of
    metrics.json; DSIFT has two). ``tta="flip"`` averages the scores of each crop and its horizontal mirror.
    """

    def __init__(
        self, run_dir: str | os.PathLike, variant: str | None = None, tta: str | None = None, batch_size: int = 32
    ):
        self.run_dir = Path(run_dir)
        if tta not in TTA:
            raise ValueError(f"tta must be one of {[t for t in TTA if t]}, got {tta!r}")
        self.tta = None if tta == "none" else tta
        self.predictor: Predictor = load_predictor(self.run_dir, variant, batch_size)
        self.cfg, self.summary = self.predictor.cfg, self.predictor.summary
        self.strategy: str = self.predictor.name
        self.classes, self.positive = self.predictor.classes, self.predictor.positive
        self.variants, self.variant = self.predictor.variants, self.predictor.variant
        self.batch_size = self.predictor.batch_size

    @property
    def crop(self) -> CropSpec:
        """The aligned crop the model scores (a fused run: its first source's)."""
        return self.predictor.crop

    @property
    def description(self) -> str:
        """backbone / weights / strategy (variant) in words."""
        return self.predictor.describe().summary

    def training_rows(self) -> Any:
        """The rows of the run's split.csv it trained or validated on (roles train and val; every column as text).
        FileNotFoundError when the run dir has no split.csv."""
        import pandas as pd

        split = pd.read_csv(self.run_dir / "split.csv", dtype=str)
        return split[split["role"].isin(["train", "val"])]

    def preprocessor(
        self, n_workers: int | None = None, cache_dir: str | os.PathLike | None = None, progress: bool = False
    ) -> Any:
        """The run's Preprocessor (its detector, landmarks, alignment and cache; workers, cache and bar as given)."""
        from omegaconf import OmegaConf

        settings = OmegaConf.to_container(self.cfg.preprocess, resolve=True)
        settings.update(n_workers=n_workers, progress=progress)
        if cache_dir is not None:
            settings["cache_dir"] = str(cache_dir)
        return build(settings)

    def checkpoint(self) -> Path:
        """DTL1: the checkpoint the run's test pass used (recorded in metrics.json)."""
        checkpoint = getattr(self.predictor, "checkpoint", None)
        if checkpoint is None:
            raise ValueError(f"{self.run_dir}: a {self.strategy} run has no checkpoint")
        return checkpoint()

    def model(self) -> Any:
        """The strategy's fitted model (DTL1: the FineTune module; DTL2: (backbone, svm, Platt svm or None); DSIFT:
        (vocabulary, svm); fused DTL2: (backbones, fusion model, Platt model or None))."""
        return self.predictor.model()

    def torch_module(self) -> torch.nn.Module:
        """The CNN as a torch module (FaceBackbone, eval mode): DTL1 with its fine-tuned head, DTL2 the frozen
        feature extractor. Its ``preprocess(crops)`` turns uint8 crops into the input tensor."""
        return self.predictor.torch_module()

    def score_crops(self, crops: np.ndarray, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(scores, probabilities) of aligned uint8 crops (N, H, W, 3), in batches of ``batch_size``."""
        return self.predictor.score_crops(crops, self.tta, progress)

    def score(
        self,
        paths: Sequence[str | os.PathLike],
        n_workers: int | None = 1,
        cache_dir: str | os.PathLike | None = None,
        progress: bool = False,
    ) -> Scored:
        """Preprocess ``paths`` as the run did (one pass: detection, landmarks and crop) and score every crop."""
        preprocessor = self.preprocessor(n_workers, cache_dir, progress)
        return self.predictor.score(preprocessor, [os.fspath(p) for p in paths], self.tta, progress)
