"""A toy strategy in one module (the "add a strategy" example the tests train, apply, explain and report).

The mean colour of a small aligned face, classified by the nearest class mean. Nothing else in the package knows
it: ``strategy._target_=tests.toy_strategy.MeanColour`` trains it, and its run dirs load through the registry.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from facediag.core.crop import CropSpec
from facediag.scoring.results import prediction_frame
from facediag.strategies.predictor import Description, Predictor, softmax
from facediag.strategies.registry import register_strategy

MEANS = "toy_class_means.npz"  # the model file of a run: one mean colour per class


def mean_colour(crops: np.ndarray) -> np.ndarray:
    """(N, 3) mean RGB of uint8 crops (N, H, W, 3)."""
    return np.asarray(crops, dtype=np.float64).reshape(len(crops), -1, 3).mean(axis=1)


class MeanColourPredictor(Predictor):
    """A toy run: the class means in ``toy_class_means.npz``; a class's score is minus the distance to its mean."""

    @property
    def crop(self) -> CropSpec:
        return CropSpec(size=int(self.cfg.strategy.size))

    def _load_model(self) -> np.ndarray:
        return np.load(self.run_dir / MEANS)["means"]

    def save(self, run_dir: str | os.PathLike) -> None:
        np.savez(Path(run_dir) / MEANS, means=self.model())

    def features(self, crops: np.ndarray) -> np.ndarray:
        return mean_colour(crops)

    def score_batch(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        distances = np.linalg.norm(self.features(crops)[:, None, :] - self.model()[None], axis=2)
        return -distances, softmax(-distances / 10)

    def describe(self) -> Description:
        return Description(self.name, f"mean colour / {self.name}",
                           f"the mean colour of the aligned face, nearest class mean ({self.name})", {"": self.crop})


@register_strategy("toy_mean_colour", predictor=MeanColourPredictor)
class MeanColour:
    """Nearest class mean of the face's mean colour (``size`` px crops)."""

    uses_backbone = False

    def __init__(self, name: str = "toy_mean_colour", size: int = 64):
        self.name, self.size = name, size

    def fit(self, job: Any) -> MeanColourPredictor:
        faces = job.faces(CropSpec(size=self.size))
        rows, crops = faces.rows, faces.crops
        colours, y = mean_colour(crops), job.targets(rows)
        train = (rows["role"] == "train").to_numpy()
        means = np.stack([colours[train & (y == k)].mean(axis=0) for k in range(len(job.classes))])
        predictor = MeanColourPredictor.fitted(job, means, variant=self.name)
        val = (rows["role"] == "val").to_numpy()
        if val.any():  # the validation accuracy every strategy reports (the report chooses its row by it)
            job.info["val_accuracy"] = float((predictor.score_batch(crops[val])[0].argmax(axis=1) == y[val]).mean())
        test = (rows["role"] == "test").to_numpy()
        predictor.predictions = prediction_frame(rows[test], predictor.score_batch(crops[test])[0], job.classes,
                                                 self.name)
        return predictor
