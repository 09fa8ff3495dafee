"""DTL2: the pretrained CNN as a frozen feature extractor + a linear SVM (the paper's best strategy).

Features come from the one frozen-feature path (:func:`facediag.strategies.frozen.frozen_features`: the per-image
cache, the CNN only for misses) and are dumped to ``features/<role>.npz``; the SVM is fitted with C chosen by
subject-grouped CV inside the training part and scores the test part. ``DTL2Predictor.save`` keeps the SVM as
plain arrays (``svm_arrays.npz``, :mod:`facediag.classifiers.linear_svm`) or, where those cannot reproduce it, with
skops. This module imports neither Lightning nor scikit-learn: applying a DTL2 run needs neither.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from facediag.classifiers.linear_svm import ARRAYS_FILE, SVM_FILE, SVM_PLATT_FILE, export
from facediag.classifiers.svm import VAL_SOURCE, decision_scores, select_svm
from facediag.scoring.results import prediction_frame
from facediag.strategies.predictor import Description, Predictor, grid, softmax
from facediag.strategies.registry import register_strategy

if TYPE_CHECKING:
    from facediag.strategies.job import Job

log = logging.getLogger(__name__)
ROLES = ("train", "val", "test")


class DTL2Predictor(Predictor):
    """A DTL2 run: the frozen backbone + ``svm_arrays.npz`` (or ``svm.skops`` + ``svm_platt.skops`` where the
    arrays could not reproduce the SVM). ``model()`` is (backbone, svm, Platt svm or None)."""

    has_cnn = True

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._backbone: Any = None
        self._svm: tuple[Any, Any] | None = None
        self._fit_features: np.ndarray | None = None  # fit(): the training features export() checks on

    def backbone(self) -> Any:
        """The frozen backbone (eval mode) with the run's verified weights."""
        if self._backbone is None:
            from facediag.models import create_from_config

            self._backbone = create_from_config(self.cfg.backbone, self.cfg.weights).eval()
        return self._backbone

    def svm(self) -> tuple[Any, Any]:
        """(svm, Platt-scaled svm or None): ``svm_arrays.npz`` (numpy only) when present, else the skops files."""
        if self._svm is None:
            from facediag.classifiers.linear_svm import LinearSVM

            arrays = self.run_dir / ARRAYS_FILE
            if arrays.is_file():
                svm = LinearSVM(arrays)
                self._svm = (svm, svm if svm.has_probabilities else None)
            else:
                platt = self.run_dir / SVM_PLATT_FILE
                self._svm = (load_svm(self.run_dir, SVM_FILE), load_svm(self.run_dir, SVM_PLATT_FILE)
                             if platt.is_file() else None)
        return self._svm

    def _load_model(self) -> Any:
        return (self.backbone(), *self.svm())

    def save(self, run_dir: str | os.PathLike) -> None:
        """Plain arrays (scoring needs neither scikit-learn nor skops) when they reproduce the fitted SVM on the
        training features, else the scikit-learn objects as skops files."""
        from facediag.classifiers.estimators import save_estimator

        assert self._svm is not None and self._fit_features is not None, "save() follows fit()"
        estimator, platt = self._svm
        if not export(estimator, platt, self._fit_features, Path(run_dir) / ARRAYS_FILE):
            save_estimator(estimator, Path(run_dir) / SVM_FILE)
            if platt is not None:
                save_estimator(platt, Path(run_dir) / SVM_PLATT_FILE)

    def features(self, crops: np.ndarray) -> np.ndarray:
        from facediag.models.features import extract_features

        return extract_features(self.backbone(), crops, batch_size=self.batch_size)

    def score_batch(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        svm, platt = self.svm()
        features = self.features(crops)
        scores = decision_scores(svm, features, len(self.classes))
        return scores, platt.predict_proba(features) if platt is not None else softmax(scores)

    def torch_module(self) -> Any:
        return self.backbone()

    def class_score_module(self) -> Any:
        """The backbone followed by the SVM as a ``torch.nn.Linear`` (its scaler folded in): the decision values."""
        from facediag.classifiers.torch_linear import FeaturesThenLinear, svm_as_linear

        return FeaturesThenLinear(self.backbone(), svm_as_linear(self.svm()[0], len(self.classes))).eval()

    def describe(self) -> Description:
        backbone, weights, s = str(self.cfg.backbone.name), str(self.cfg.weights.name), self.cfg.strategy
        layer = self.cfg.backbone.get("feature_layer")
        scale = "standardised " if s.get("standardize") else ""
        model = (f"{backbone} pretrained on {weights} as a frozen feature extractor"
                 + (f" (feature layer {layer})" if layer else "")
                 + f", {scale}features into a linear SVM with C from {grid(s.get('C_grid'))} by "
                 f"{s.get('cv_folds')}-fold person-grouped CV on the training part (DTL2)")
        return Description(self.name, f"{backbone} / {weights} / {self.name}", model, {"": self.crop}, backbone,
                           weights)


@register_strategy("dtl2", predictor=DTL2Predictor)
class DTL2:
    """Frozen CNN features + linear SVM. ``C_grid`` is searched by grouped CV on the training part."""

    uses_backbone = True
    val_score_is_accuracy = True  # its val_score is a grouped-CV accuracy (runs before val_accuracy)

    def __init__(
        self,
        name: str = "dtl2",
        C_grid: Sequence[float] = (0.001, 0.01, 0.1, 1.0, 10.0),
        cv_folds: int = 5,
        standardize: bool = True,
        probability: bool = True,
    ):
        self.name = name
        self.C_grid, self.cv_folds = list(C_grid), cv_folds
        self.standardize, self.probability = standardize, probability

    def estimator(self) -> Any:
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC

        steps = [("scale", StandardScaler())] if self.standardize else []
        return Pipeline([*steps, ("svm", SVC(kernel="linear"))])

    def fit(self, job: Job) -> DTL2Predictor:
        started = time.perf_counter()
        split = split_features(job)
        rows, features, cnn_images, fit, test = split.rows, split.features, split.cnn_images, split.fit, split.test
        y, groups = job.targets(rows), rows.loc[fit, "subject"]
        selected = select_svm(self.estimator(), features[fit], y[fit], groups, self.C_grid, self.cv_folds, job.seed,
                              param="svm__C")
        log.info("DTL2 SVM: C=%s (grouped CV accuracy %s)", selected.C, selected.cv_accuracy)
        platt = None
        if self.probability:
            platt = platt_scaled(selected.estimator, features[fit], y[fit], groups, self.cv_folds, job.seed)
        predictor = DTL2Predictor.fitted(job, None, variant=self.name)
        predictor._svm, predictor._fit_features = (selected.estimator, platt), features[fit]
        scores = decision_scores(selected.estimator, features[test], len(job.classes))
        predictor.predictions = prediction_frame(rows[test], scores, job.classes, "dtl2")
        job.info.update(
            cnn_images=cnn_images,
            feature_dim=int(features.shape[1]),
            svm_C=selected.C,
            svm_cv_accuracy=selected.cv_accuracy,
            val_score=max(selected.cv_accuracy.values(), default=None),
            val_accuracy=max(selected.cv_accuracy.values(), default=None),
            val_source=VAL_SOURCE,
            features_s=round(time.perf_counter() - started, 2),
        )
        return predictor


@dataclass(frozen=True)
class SplitFeatures:
    """A job's split through its frozen backbone: the split rows, their features (``features[i]`` is row i) and
    how many images the CNN itself had to see (cache misses)."""

    rows: pd.DataFrame
    features: np.ndarray
    cnn_images: int

    @property
    def fit(self) -> np.ndarray:
        """The training and validation rows: what a classifier is fitted and chosen on."""
        return self.rows["role"].isin(["train", "val"]).to_numpy()

    @property
    def test(self) -> np.ndarray:
        return (self.rows["role"] == "test").to_numpy()


def split_features(job: Job) -> SplitFeatures:
    """The job's split in its backbone's crops through the frozen backbone, each role written to
    ``features/<role>.npz`` (DTL2 and the gallery)."""
    from facediag.strategies.frozen import frozen_features

    faces = job.faces(job.backbone_crop)
    features, cnn_images = frozen_features(job, job.cfg.backbone, job.cfg.weights, faces.rows, faces.crops)
    dump_features(job.out_dir / "features", faces.rows, features)
    return SplitFeatures(faces.rows, features, cnn_images)


def dump_features(folder: Path, rows: pd.DataFrame, features: np.ndarray) -> None:
    """``<folder>/<role>.npz`` (features, labels, paths, subjects) per role; ``features[i]`` is ``rows``' row i."""
    folder.mkdir(exist_ok=True)
    for role in ROLES:
        mask = (rows["role"] == role).to_numpy()
        np.savez_compressed(
            folder / f"{role}.npz",
            features=features[mask],
            labels=rows.loc[mask, "label"].to_numpy(dtype=str),
            paths=rows.loc[mask, "path"].to_numpy(dtype=str),
            subjects=rows.loc[mask, "subject"].to_numpy(dtype=str),
        )


def platt_scaled(estimator: Any, features: np.ndarray, y: np.ndarray, groups: Any, n_folds: int, seed: int) -> Any:
    """The SVM with Platt-scaled probabilities (sigmoid fitted on person-grouped out-of-fold decision values)."""
    from sklearn.base import clone
    from sklearn.calibration import CalibratedClassifierCV

    from facediag.classifiers.svm import person_folds

    groups = np.asarray(groups)
    splits = list(person_folds(y, groups, n_folds, seed).split(features, y, groups))
    calibrated = CalibratedClassifierCV(clone(estimator), method="sigmoid", cv=splits, ensemble=False)
    return calibrated.fit(features, y)


def load_svm(run_dir: str | Path, name: str = SVM_FILE) -> Any:
    """A fitted SVM of the run (skops: only trusted sklearn/numpy types are loaded, never arbitrary pickle).

    ``svm.skops`` gives decision values; ``svm_platt.skops`` Platt-scaled probabilities.
    """
    from facediag.classifiers.estimators import load_estimator

    return load_estimator(Path(run_dir) / name)
