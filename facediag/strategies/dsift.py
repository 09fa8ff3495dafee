"""The paper's traditional baseline: dense SIFT → bag of visual words → SVM (linear and chi²).

The vocabulary is fitted on the training part only; each classifier is one `variant` of the run
(the paper's two result rows). ``DSIFTPredictor.save`` keeps the vocabulary (``dsift_bow.skops``) and every SVM
(``svm_<kind>.skops``) with skops, so facediag.apply.trained_run can apply the run to new images.
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
from threadpoolctl import threadpool_limits

from facediag.classifiers.svm import VAL_SOURCE, decision_scores, select_svm
from facediag.core.crop import DEFAULT_CROP, CropSpec
from facediag.scoring.results import TEXT_COLUMNS, prediction_frame
from facediag.strategies.predictor import Description, FeatureSet, Predictor, grid, softmax
from facediag.strategies.registry import register_strategy

if TYPE_CHECKING:
    from facediag.strategies.job import Job

log = logging.getLogger(__name__)
VOCABULARY = "dsift_bow.skops"  # the fitted DenseSiftBow; each variant's SVM is <variant>.skops
FEATURES = "dsift_features.npz"  # every split image's histogram (features, paths, roles)


class DSIFTPredictor(Predictor):
    """A DSIFT run: ``dsift_bow.skops`` + the SVM of ``variant`` (default: the run's first variant, the one at the
    top of metrics.json). ``model()`` is (vocabulary, svm)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._fitted_svms: dict[str, Any] = {}  # fit(): every variant's SVM, for save()

    @property
    def crop(self) -> CropSpec:
        s = self.cfg.strategy
        return CropSpec(s.crop_size, s.template, s.padding)

    def _load_model(self) -> tuple[Any, Any]:
        from facediag.classifiers.estimators import load_estimator

        files = self.summary.get("model_files") or {}
        vocabulary = self.run_dir / str(self.summary.get("vocabulary", VOCABULARY))
        svm = self.run_dir / str(files.get(self.variant, f"{self.variant}.skops"))
        return load_estimator(vocabulary), load_estimator(svm)

    def save(self, run_dir: str | os.PathLike) -> None:
        from facediag.classifiers.estimators import save_estimator

        vocabulary, _ = self.model()
        save_estimator(vocabulary, Path(run_dir) / VOCABULARY)
        for variant, svm in self._fitted_svms.items():
            save_estimator(svm, Path(run_dir) / f"{variant}.skops")

    def features(self, crops: np.ndarray) -> np.ndarray:
        with threadpool_limits(1):  # as in training: k-means' tiny OpenMP steps crawl with threads on busy cores
            return self.model()[0].transform(crops)

    def score_batch(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores = decision_scores(self.model()[1], self.features(crops), len(self.classes))
        return scores, softmax(scores)

    def stored_features(self, role: str) -> FeatureSet | None:
        """The histograms of the run's ``role`` photos (``dsift_features.npz``), labels from split.csv."""
        stored = self.run_dir / FEATURES
        if not stored.is_file():
            return None
        data = np.load(stored)
        split = pd.read_csv(self.run_dir / "split.csv", dtype=TEXT_COLUMNS)
        label = dict(zip(split["path"], split["label"], strict=True))
        mask = data["roles"].astype(str) == role
        paths = data["paths"].astype(str)[mask]
        return FeatureSet(data["features"][mask], np.array([label.get(p, "") for p in paths]), paths,
                          np.full(len(paths), role))

    def describe(self) -> Description:
        s = self.cfg.strategy
        model = (f"dense SIFT (step {s.get('step')} px, sizes {list(s.get('sizes') or [])}) on {s.get('crop_size')} "
                 f"px aligned faces, a bag of {s.get('n_words')} visual words fitted on the training images, "
                 f"SVM {self.variant} with C from {grid(s.get('C_grid'))} by person-grouped CV")
        return Description(self.name, f"dense SIFT + BoW / {self.variant}", model, {"": self.crop})


@register_strategy("dsift", predictor=DSIFTPredictor)
class DSIFT:
    """Dense SIFT BoW features on the aligned face (``crop_size`` px), then one SVM per ``classifiers`` kind."""

    uses_backbone = False  # no pretrained CNN: no backbone / weights, MACs or weight files
    val_score_is_accuracy = True  # its val_score is a grouped-CV accuracy (runs before val_accuracy)

    def __init__(
        self,
        name: str = "dsift",
        uses_backbone: bool = False,
        crop_size: int = DEFAULT_CROP.size,
        template: str = DEFAULT_CROP.template,
        padding: float = DEFAULT_CROP.padding,
        step: int = 6,
        sizes: Sequence[float] = (4, 8),
        n_words: int = 256,
        max_descriptors_per_image: int = 200,
        classifiers: Sequence[str] = ("linear", "chi2"),
        C_grid: Sequence[float] = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0),
        cv_folds: int = 5,
    ):
        self.name = name
        self.crop = CropSpec(crop_size, template, padding)
        self.bow_params = dict(
            step=step, sizes=tuple(sizes), n_words=n_words, max_descriptors_per_image=max_descriptors_per_image
        )
        self.classifiers, self.C_grid, self.cv_folds = list(classifiers), list(C_grid), cv_folds

    def fit(self, job: Job) -> DSIFTPredictor:
        from facediag.classifiers.dense_sift import DenseSiftBow, make_svm

        started = time.perf_counter()
        faces = job.faces(self.crop)
        rows, crops = faces.rows, faces.crops
        fit = rows["role"].isin(["train", "val"]).to_numpy()
        test = (rows["role"] == "test").to_numpy()
        with threadpool_limits(1):  # k-means on 2 busy cores: threads slow it down up to 15x
            bow = DenseSiftBow(seed=job.seed, **self.bow_params).fit(crops[fit])
            features = bow.transform(crops)
        y = job.targets(rows)
        job.info["vocabulary"] = VOCABULARY
        job.info["model_files"] = {}
        frames, svms = [], {}
        for kind in self.classifiers:
            selected = select_svm(
                make_svm(kind), features[fit], y[fit], rows.loc[fit, "subject"], self.C_grid, self.cv_folds, job.seed
            )
            log.info("DSIFT %s: C=%s (grouped CV accuracy %s)", kind, selected.C, selected.cv_accuracy)
            job.info[f"svm_{kind}_C"] = selected.C
            val_score = max(selected.cv_accuracy.values(), default=None)
            # each variant is a row of the results table, selected on its own grouped-CV accuracy
            job.info.setdefault("variant_info", {})[f"svm_{kind}"] = {
                "svm_C": selected.C, "val_score": val_score, "val_accuracy": val_score,
                "val_source": VAL_SOURCE,
            }
            scores = decision_scores(selected.estimator, features[test], len(job.classes))
            variant = f"svm_{kind}"
            svms[variant] = selected.estimator
            job.info["model_files"][variant] = f"{variant}.skops"
            frames.append(prediction_frame(rows[test], scores, job.classes, variant))
        job.info["features_s"] = round(time.perf_counter() - started, 2)
        job.info["feature_dim"] = int(features.shape[1])
        np.savez_compressed(
            job.out_dir / FEATURES,
            features=features.astype(np.float32),
            paths=rows["path"].to_numpy(dtype=str),
            roles=rows["role"].to_numpy(dtype=str),
        )
        first = next(iter(svms))
        predictor = DSIFTPredictor.fitted(job, (bow, svms[first]), variant=first, variants=list(svms),
                                          vocabulary=VOCABULARY, model_files=dict(job.info["model_files"]))
        predictor._fitted_svms = svms
        predictor.predictions = pd.concat(frames, ignore_index=True)
        return predictor
