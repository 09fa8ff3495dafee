"""The paper's traditional baseline: dense SIFT → bag of visual words → SVM (linear and chi²).

The vocabulary is fitted on the training part only; each classifier is one `variant` of the run
(the paper's two result rows). The vocabulary (``dsift_bow.skops``) and every SVM
(``svm_<kind>.skops``) are saved with skops, so facediag.apply.trained_run can apply the run to new images.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from facediag.classifiers.dense_sift import DenseSiftBow, make_svm
from facediag.classifiers.estimators import save_estimator
from facediag.classifiers.svm import VAL_SOURCE, decision_scores, select_svm
from facediag.scoring.results import prediction_frame
from facediag.strategies.job import Job

log = logging.getLogger(__name__)
VOCABULARY = "dsift_bow.skops"  # the fitted DenseSiftBow; each variant's SVM is <variant>.skops


class DSIFT:
    """Dense SIFT BoW features on the aligned face (``crop_size`` px), then one SVM per ``classifiers`` kind."""

    def __init__(
        self,
        name: str = "dsift",
        uses_backbone: bool = False,
        crop_size: int = 150,
        template: str = "dlib",
        padding: float = 0.25,
        step: int = 6,
        sizes: Sequence[float] = (4, 8),
        n_words: int = 256,
        max_descriptors_per_image: int = 200,
        classifiers: Sequence[str] = ("linear", "chi2"),
        C_grid: Sequence[float] = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0),
        cv_folds: int = 5,
    ):
        self.name = name
        self.crop = (crop_size, template, padding)
        self.bow_params = dict(
            step=step, sizes=tuple(sizes), n_words=n_words, max_descriptors_per_image=max_descriptors_per_image
        )
        self.classifiers, self.C_grid, self.cv_folds = list(classifiers), list(C_grid), cv_folds

    def run(self, job: Job) -> pd.DataFrame:
        started = time.perf_counter()
        rows, crops = job.crops(*self.crop)
        fit = rows["role"].isin(["train", "val"]).to_numpy()
        test = (rows["role"] == "test").to_numpy()
        with threadpool_limits(1):  # k-means on 2 busy cores: threads slow it down up to 15x
            bow = DenseSiftBow(seed=job.seed, **self.bow_params).fit(crops[fit])
            features = bow.transform(crops)
        y = job.targets(rows)
        save_estimator(bow, job.out_dir / VOCABULARY)
        job.info["vocabulary"] = VOCABULARY
        job.info["model_files"] = {}
        frames = []
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
            job.info["model_files"][variant] = save_estimator(selected.estimator, job.out_dir / f"{variant}.skops").name
            frames.append(prediction_frame(rows[test], scores, job.classes, variant))
        job.info["features_s"] = round(time.perf_counter() - started, 2)
        job.info["feature_dim"] = int(features.shape[1])
        np.savez_compressed(
            job.out_dir / "dsift_features.npz",
            features=features.astype(np.float32),
            paths=rows["path"].to_numpy(dtype=str),
            roles=rows["role"].to_numpy(dtype=str),
        )
        return pd.concat(frames, ignore_index=True)
