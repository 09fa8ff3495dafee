"""Apply a finished run to new images: the same preprocessing, crop and model (DTL1 or DTL2)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from facediag.results import RUN_CONFIG


@dataclass
class Scored:
    """Scores of the images that got a face crop; ``results`` has one preprocessing result per input path."""

    paths: list[str]
    crops: np.ndarray
    scores: np.ndarray  # (K, C): DTL1 softmax probabilities, DTL2 SVM decision values
    probabilities: np.ndarray  # (K, C): DTL1 softmax, DTL2 Platt-scaled
    results: list[Any]


class TrainedRun:
    """A run dir of `train.py` turned back into a classifier (DTL1 best checkpoint or DTL2 SVM + backbone)."""

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        config = self.run_dir / RUN_CONFIG
        if not config.is_file():
            raise FileNotFoundError(f"{self.run_dir}: no {RUN_CONFIG}; is this a facediag training run dir?")
        self.cfg: DictConfig = OmegaConf.load(config)
        self.strategy = str(self.cfg.strategy.name)
        if self.strategy not in ("dtl1", "dtl2"):
            raise ValueError(f"{self.run_dir}: applying a {self.strategy} run to new images is not supported")
        metrics = self.run_dir / "metrics.json"
        if not metrics.is_file():
            raise FileNotFoundError(f"{self.run_dir}: no metrics.json; the run did not finish")
        import json

        summary = json.loads(metrics.read_text())
        self.classes: list[str] = list(summary["classes"])
        self.positive: str | None = summary.get("positive")
        align = self.cfg.backbone.align
        self.crop = (int(align.size), str(align.template), float(align.padding))
        self._model: Any = None

    def preprocessor(self) -> Any:
        return instantiate(self.cfg.preprocess)

    def _backbone(self) -> Any:
        from facediag.models import create_from_config

        return create_from_config(
            OmegaConf.to_container(self.cfg.backbone, resolve=True),
            OmegaConf.to_container(self.cfg.weights, resolve=True),
        )

    def model(self) -> Any:
        """DTL1: the fine-tuned network (best checkpoint); DTL2: (backbone, svm, Platt-scaled svm)."""
        if self._model is None:
            if self.strategy == "dtl1":
                from facediag.strategies.dtl1 import FineTune

                best = self.run_dir / "checkpoints" / "best.ckpt"
                # rebuilt with the run's own settings (head_norm changes the head's layers)
                net = FineTune.load_from_checkpoint(best, map_location="cpu", weights_only=True,
                                                    backbone=self._backbone())
                self._model = net.eval()
            else:
                from facediag.strategies.dtl2 import load_svm

                platt = self.run_dir / "svm_platt.skops"
                self._model = (
                    self._backbone().eval(),
                    load_svm(self.run_dir),
                    load_svm(self.run_dir, platt.name) if platt.is_file() else None,
                )
        return self._model

    @torch.no_grad()
    def score_crops(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(scores, probabilities) of aligned uint8 crops."""
        from facediag.svm import decision_scores

        if len(crops) == 0:
            empty = np.zeros((0, len(self.classes)))
            return empty, empty
        if self.strategy == "dtl1":
            probabilities = torch.softmax(self.model()(torch.from_numpy(crops)).float(), dim=1).numpy()
            return probabilities, probabilities
        backbone, svm, platt = self.model()
        features = backbone.features(backbone.preprocess(crops)).float().numpy()
        scores = decision_scores(svm, features, len(self.classes))
        probabilities = platt.predict_proba(features) if platt is not None else _softmax(scores)
        return scores, probabilities

    def score(self, paths: Sequence[str | os.PathLike]) -> Scored:
        """Preprocess ``paths`` as the run did and score every image with a face."""
        preprocessor = self.preprocessor()
        results = preprocessor.landmarks([str(p) for p in paths])
        crops, kept = preprocessor.crops([str(p) for p in paths], *self.crop)
        scores, probabilities = self.score_crops(crops)
        return Scored([r.path for r in kept], crops, scores, probabilities, results)


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
