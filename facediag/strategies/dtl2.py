"""DTL2: the pretrained CNN as a frozen feature extractor + a linear SVM (the paper's best strategy).

A Lightning ``predict`` pass over train/val/test serves features (from the cache, or from the CNN,
built only when an image is missing from the cache); ``FeatureSVMCallback`` dumps them to
``features/<role>.npz``, fits the SVM with C chosen by subject-grouped CV inside the training part,
scores the test part and saves the SVM as plain arrays (``svm_arrays.npz``, ``facediag.classifiers.linear_svm``) or,
where those cannot reproduce it, with skops.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from torch.utils.data import DataLoader

from facediag.classifiers.linear_svm import ARRAYS_FILE, SVM_FILE, SVM_PLATT_FILE, export
from facediag.classifiers.svm import VAL_SOURCE, decision_scores, select_svm
from facediag.data.datamodule import FaceCrops
from facediag.models.feature_cache import FeatureCache
from facediag.scoring.results import prediction_frame
from facediag.strategies.job import FULL_PRECISION, Job

log = logging.getLogger(__name__)
ROLES = ("train", "val", "test")


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


class FeatureSVMCallback(pl.Callback):
    """Collects predict outputs, dumps features/<role>.npz, fits the SVM on train+val, scores the test part."""

    def __init__(
        self, job: Job, rows: pd.DataFrame, C_grid: Sequence[float], cv_folds: int, standardize: bool, probability: bool
    ):
        self.job, self.rows = job, rows
        self.C_grid, self.cv_folds, self.standardize, self.probability = C_grid, cv_folds, standardize, probability
        self.features = np.zeros((0, 0), dtype=np.float32)
        self.predictions: pd.DataFrame | None = None
        self.selected: Any = None

    def on_predict_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        features, rows = outputs
        if self.features.size == 0:
            self.features = np.zeros((len(self.rows), features.shape[1]), dtype=np.float32)
        self.features[rows] = features

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.finish()

    def finish(self) -> None:
        """Dump the collected features and fit / score the SVM (at the end of the predict pass, or at once
        when every image's features came from the cache)."""
        self.dump_features()
        self.predictions = self.fit_and_score()

    def dump_features(self) -> None:
        dump_features(self.job.out_dir / "features", self.rows, self.features)

    def estimator(self) -> Pipeline:
        steps = [("scale", StandardScaler())] if self.standardize else []
        return Pipeline([*steps, ("svm", SVC(kernel="linear"))])

    def fit_and_score(self) -> pd.DataFrame:
        from facediag.classifiers.estimators import save_estimator

        fit = self.rows["role"].isin(["train", "val"]).to_numpy()
        test = (self.rows["role"] == "test").to_numpy()
        y = self.job.targets(self.rows)
        self.selected = select_svm(
            self.estimator(),
            self.features[fit],
            y[fit],
            self.rows.loc[fit, "subject"],
            self.C_grid,
            self.cv_folds,
            self.job.seed,
            param="svm__C",
        )
        log.info("DTL2 SVM: C=%s (grouped CV accuracy %s)", self.selected.C, self.selected.cv_accuracy)
        platt = None
        if self.probability:
            platt = platt_scaled(
                self.selected.estimator,
                self.features[fit],
                y[fit],
                self.rows.loc[fit, "subject"],
                self.cv_folds,
                self.job.seed,
            )
        # one saved model: plain arrays (scoring needs neither scikit-learn nor skops) when they reproduce the
        # fitted SVM on the training features, else the scikit-learn objects as skops files
        if not export(self.selected.estimator, platt, self.features[fit], self.job.out_dir / ARRAYS_FILE):
            save_estimator(self.selected.estimator, self.job.out_dir / SVM_FILE)
            if platt is not None:
                save_estimator(platt, self.job.out_dir / SVM_PLATT_FILE)
        scores = decision_scores(self.selected.estimator, self.features[test], len(self.job.classes))
        return prediction_frame(self.rows[test], scores, self.job.classes, "dtl2")


class DTL2:
    """Frozen CNN features + linear SVM. ``C_grid`` is searched by grouped CV on the training part."""

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

    def run(self, job: Job) -> pd.DataFrame:
        started = time.perf_counter()
        rows, crops = job.crops(*job.backbone_crop)
        digests = rows["sha256"].to_numpy(dtype=str)
        cache = job.feature_cache()
        module = FrozenFeatures(job.make_backbone, cache, digests)
        callback = FeatureSVMCallback(job, rows, self.C_grid, self.cv_folds, self.standardize, self.probability)
        cached = cache.stacked(digests)
        if cached is not None:  # a warm cache: no CNN, no predict pass (~1 s)
            callback.features = cached
            callback.finish()
        else:
            loader = DataLoader(
                FaceCrops(crops, job.targets(rows), np.arange(len(rows)), None), shuffle=False, **job.loader_options
            )
            feature_trainer(job, callbacks=[callback]).predict(module, dataloaders=loader, return_predictions=False)
        job.info.update(
            cnn_images=module.cnn_images,
            feature_dim=int(callback.features.shape[1]),
            svm_C=callback.selected.C,
            svm_cv_accuracy=callback.selected.cv_accuracy,
            val_score=max(callback.selected.cv_accuracy.values(), default=None),
            val_accuracy=max(callback.selected.cv_accuracy.values(), default=None),
            val_source=VAL_SOURCE,
            features_s=round(time.perf_counter() - started, 2),
        )
        assert callback.predictions is not None
        return callback.predictions


def feature_trainer(job: Job, callbacks: Sequence[pl.Callback] = ()) -> pl.Trainer:
    """The Trainer of a frozen-feature predict pass (DTL2, fused DTL2): one device, in this process (the SVM needs
    every image's features: no sharding across ranks), full precision on every device (the per-image cache
    holds the same features for CPU and GPU runs)."""
    return job.make_trainer(callbacks=list(callbacks), enable_checkpointing=False, enable_progress_bar=False,
                            devices=1, strategy="auto", num_nodes=1, precision=FULL_PRECISION)


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
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import StratifiedGroupKFold

    from facediag.classifiers.svm import grouped_folds

    groups = np.asarray(groups)
    folds = StratifiedGroupKFold(n_splits=grouped_folds(y, groups, n_folds), shuffle=True, random_state=seed)
    splits = list(folds.split(features, y, groups))
    calibrated = CalibratedClassifierCV(clone(estimator), method="sigmoid", cv=splits, ensemble=False)
    return calibrated.fit(features, y)


def load_svm(run_dir: str | Path, name: str = SVM_FILE) -> Any:
    """A fitted SVM of the run (skops: only trusted sklearn/numpy types are loaded, never arbitrary pickle).

    ``svm.skops`` gives decision values; ``svm_platt.skops`` Platt-scaled probabilities.
    """
    from facediag.classifiers.estimators import load_estimator

    return load_estimator(Path(run_dir) / name)
