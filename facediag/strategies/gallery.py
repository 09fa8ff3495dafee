"""Gallery: rank the classes by how close a photo's face-recognition embedding is to each class's training photos.

The way GestaltMatcher ranks syndromes: no classifier is fitted. The frozen backbone's features (the one
frozen-feature path, :func:`facediag.strategies.frozen.frozen_features`, and its per-image cache) of the training
photos are the gallery; a photo's distance to a class is the cosine distance of its embedding to the class's mean
embedding (``mean``) or the mean cosine distance to its ``k`` nearest photos of that class (``knn``). Each rule in
``rules`` is one variant (a row of the results table). Scores are minus the distances; probabilities the softmax of
minus the distances over a temperature. ``k`` and the temperature are chosen by person-grouped CV inside the
training part (k by accuracy, the temperature by log loss of the out-of-fold distances), the gallery is the whole
training part.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from facediag.scoring.results import prediction_frame
from facediag.strategies.predictor import Description, Predictor, softmax
from facediag.strategies.registry import register_strategy

if TYPE_CHECKING:
    from facediag.strategies.job import Job

log = logging.getLogger(__name__)
GALLERY = "gallery.npz"  # the model file of a run: the training embeddings, their classes and the centre
RULES = ("mean", "knn")
VAL_SOURCE = "person-grouped CV accuracy on the training part (leave-fold-out gallery)"


def normalised(features: np.ndarray, centre: np.ndarray | None = None) -> np.ndarray:
    """Rows of ``features`` (minus ``centre``) scaled to unit length."""
    x = np.asarray(features, dtype=np.float64) - (0.0 if centre is None else centre)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def class_distances(queries: np.ndarray, gallery: np.ndarray, labels: np.ndarray, n_classes: int, rule: str,
                    k: int = 1) -> np.ndarray:
    """(N, C) cosine distances of unit-length ``queries`` to each class of the unit-length ``gallery``: to the
    class's mean direction (``mean``) or the mean of the ``k`` smallest distances to its photos (``knn``). A class
    without a gallery photo is at distance 2 (the largest)."""
    out = np.full((len(queries), n_classes), 2.0)
    for c in range(n_classes):
        members = gallery[labels == c]
        if not len(members):
            continue
        if rule == "mean":
            out[:, c] = 1.0 - queries @ normalised(members.mean(axis=0, keepdims=True))[0]
        elif rule == "knn":
            distances = 1.0 - queries @ members.T
            nearest = min(int(k), len(members))
            out[:, c] = np.sort(distances, axis=1)[:, :nearest].mean(axis=1)
        else:
            raise ValueError(f"gallery rule {rule!r}: choose one of {RULES}")
    return out


def out_of_fold_distances(features: np.ndarray, y: np.ndarray, groups: np.ndarray, n_classes: int, rule: str,
                          k: int, n_folds: int, seed: int) -> np.ndarray:
    """Each training photo's class distances to a gallery of the other inner folds' people (person-grouped)."""
    from facediag.classifiers.svm import person_folds

    out = np.zeros((len(y), n_classes))
    for inner, held in person_folds(y, groups, n_folds, seed).split(features, y, groups):
        out[held] = class_distances(features[held], features[inner], y[inner], n_classes, rule, k)
    return out


def log_loss(distances: np.ndarray, y: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of the classes ``y`` under softmax(-distances / temperature)."""
    p = softmax(-distances / temperature)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None))))


def gallery_scores(backbone: Any, gallery: np.ndarray, labels: np.ndarray, centre: np.ndarray, n_classes: int,
                   rule: str, k: int) -> Any:
    """A torch module from normalised images to minus the class distances (Grad-CAM of a gallery run); a
    ``FeaturesThenLinear`` whose ``backbone`` the saliency tools find like DTL2's."""
    import torch
    from torch import nn

    from facediag.classifiers.torch_linear import FeaturesThenLinear

    class GalleryScores(FeaturesThenLinear):
        def __init__(self) -> None:
            super().__init__(backbone, nn.Identity())
            self.register_buffer("gallery", torch.as_tensor(gallery, dtype=torch.float32))
            self.register_buffer("centre", torch.as_tensor(centre, dtype=torch.float32))
            self.labels, self.n_classes, self.rule, self.k = np.asarray(labels), n_classes, rule, k

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            q = nn.functional.normalize(self.backbone.features(x) - self.centre, dim=1)
            columns = []
            for c in range(self.n_classes):
                members = self.gallery[torch.as_tensor(self.labels == c)]
                if not len(members):
                    columns.append(torch.full_like(q[:, 0], -2.0))
                elif self.rule == "mean":
                    columns.append(q @ nn.functional.normalize(members.mean(0, keepdim=True), dim=1)[0] - 1.0)
                else:
                    nearest = min(self.k, len(members))
                    columns.append(-(1.0 - q @ members.T).topk(nearest, dim=1, largest=False).values.mean(1))
            return torch.stack(columns, dim=1)

    return GalleryScores().eval()


class GalleryPredictor(Predictor):
    """A gallery run: the frozen backbone + ``gallery.npz`` (unit-length training embeddings, their classes, the
    centre subtracted first); the variant's rule, k and temperature come from metrics.json."""

    has_cnn = True

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._backbone: Any = None

    def backbone(self) -> Any:
        if self._backbone is None:
            from facediag.models import create_from_config

            self._backbone = create_from_config(self.cfg.backbone, self.cfg.weights).eval()
        return self._backbone

    def _load_model(self) -> dict[str, np.ndarray]:
        stored = np.load(self.run_dir / GALLERY)
        return {key: stored[key] for key in stored.files}

    def save(self, run_dir: str | os.PathLike) -> None:
        np.savez_compressed(Path(run_dir) / GALLERY, **self.model())

    @property
    def setting(self) -> dict[str, Any]:
        """This variant's rule, k and temperature (``variant_info`` of metrics.json)."""
        blocks = self.summary.get("variant_info") or self.summary.get("variants")  # fitted / loaded from metrics
        info = (blocks.get(self.variant) if isinstance(blocks, dict) else None) or self.summary
        return {"rule": str(info["gallery_rule"]), "k": int(info["gallery_k"]),
                "temperature": float(info["gallery_temperature"])}

    def features(self, crops: np.ndarray) -> np.ndarray:
        from facediag.models.features import extract_features

        return extract_features(self.backbone(), crops, batch_size=self.batch_size)

    def distances(self, features: np.ndarray) -> np.ndarray:
        model, s = self.model(), self.setting
        return class_distances(normalised(features, model["centre"]), model["embeddings"], model["labels"],
                               len(self.classes), s["rule"], s["k"])

    def score_batch(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        distances = self.distances(self.features(crops))
        return -distances, softmax(-distances / self.setting["temperature"])

    def torch_module(self) -> Any:
        return self.backbone()

    def class_score_module(self) -> Any:
        model, s = self.model(), self.setting
        return gallery_scores(self.backbone(), model["embeddings"], model["labels"], model["centre"],
                             len(self.classes), s["rule"], s["k"])

    def describe(self) -> Description:
        backbone, weights, s = str(self.cfg.backbone.name), str(self.cfg.weights.name), self.setting
        how = ("the class's mean embedding" if s["rule"] == "mean"
               else f"its {s['k']} nearest training photos of the class (mean distance)")
        centred = "centred, " if self.cfg.strategy.get("center", True) else ""
        model = (f"{backbone} pretrained on {weights} as a frozen embedding; classes ranked by the cosine distance "
                 f"of the {centred}unit-length embedding to {how}, no classifier fitted (gallery, GestaltMatcher-"
                 f"style); k and the softmax temperature ({s['temperature']:g}) by person-grouped CV on the "
                 "training part")
        return Description(self.name, f"{backbone} / {weights} / gallery {s['rule']}", model, {"": self.crop},
                           backbone, weights)


@register_strategy("gallery", predictor=GalleryPredictor)
class Gallery:
    """Nearest class of a frozen embedding (``rules``: ``mean`` and / or ``knn``), no classifier fitted."""

    uses_backbone = True
    val_score_is_accuracy = True  # its val_score is a grouped-CV accuracy

    def __init__(
        self,
        name: str = "gallery",
        rules: Sequence[str] = RULES,
        k_grid: Sequence[int] = (1, 3, 5),
        temperatures: Sequence[float] = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5),
        center: bool = True,
        cv_folds: int = 5,
    ):
        unknown = [r for r in rules if r not in RULES]
        if unknown or not rules:
            raise ValueError(f"gallery rules={list(rules)}: choose from {RULES}")
        self.name, self.rules, self.k_grid = name, list(rules), [int(k) for k in k_grid]
        self.temperatures, self.center, self.cv_folds = [float(t) for t in temperatures], center, cv_folds

    def fit(self, job: Job) -> GalleryPredictor:
        from facediag.strategies.dtl2 import split_features

        started = time.perf_counter()
        split = split_features(job)
        rows, features, cnn_images, fit, test = split.rows, split.features, split.cnn_images, split.fit, split.test
        y, n_classes = job.targets(rows), len(job.classes)
        centre = features[fit].mean(axis=0) if self.center else np.zeros(features.shape[1])
        embeddings = normalised(features, centre)
        groups = rows.loc[fit, "subject"].to_numpy(dtype=str)
        frames, variant_info = [], {}
        for rule in self.rules:
            chosen = self._choose(embeddings[fit], y[fit], groups, n_classes, rule, job.seed)
            variant = f"gallery_{rule}"
            variant_info[variant] = chosen
            distances = class_distances(embeddings[test], embeddings[fit], y[fit], n_classes, rule, chosen["gallery_k"])
            frames.append(prediction_frame(rows[test], -distances, job.classes, variant))
            log.info("gallery %s: k=%s, temperature %s (grouped CV accuracy %.3f)", rule, chosen["gallery_k"],
                     chosen["gallery_temperature"], chosen["val_accuracy"])
        model = {"embeddings": embeddings[fit].astype(np.float32), "labels": y[fit],
                 "centre": centre.astype(np.float32), "paths": rows.loc[fit, "path"].to_numpy(dtype=str)}
        variants = list(variant_info)
        job.info.update(cnn_images=cnn_images, feature_dim=int(features.shape[1]), variant_info=variant_info,
                        features_s=round(time.perf_counter() - started, 2))
        predictor = GalleryPredictor.fitted(job, model, variant=variants[0], variants=variants,
                                            variant_info=variant_info)
        predictor.predictions = pd.concat(frames, ignore_index=True)
        return predictor

    def _choose(self, embeddings: np.ndarray, y: np.ndarray, groups: np.ndarray, n_classes: int, rule: str,
                seed: int) -> dict[str, Any]:
        """k (``knn``: the best person-grouped CV accuracy, the smallest k on ties) and the temperature (the
        smallest log loss of those out-of-fold distances)."""
        best: tuple[float, int, np.ndarray] | None = None
        for k in self.k_grid if rule == "knn" else [1]:
            distances = out_of_fold_distances(embeddings, y, groups, n_classes, rule, k, self.cv_folds, seed)
            accuracy = float(np.mean(distances.argmin(axis=1) == y))
            if best is None or accuracy > best[0]:
                best = (accuracy, k, distances)
        assert best is not None
        accuracy, k, distances = best
        temperature = min(self.temperatures, key=lambda t: log_loss(distances, y, t))
        return {"gallery_rule": rule, "gallery_k": int(k), "gallery_temperature": temperature,
                "val_score": accuracy, "val_accuracy": accuracy, "val_source": VAL_SOURCE}
