"""SVM selection scores C with the decision rule every prediction is reported with."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from facediag.classifiers.svm import decision_scores, grouped_folds, select_svm


def _random_five_classes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(5), 24)
    features = rng.normal(size=(len(y), 8)) + 0.3 * y[:, None]
    groups = np.repeat(np.arange(len(y) // 2), 2)  # two images per person
    return features, y, groups


def test_cv_scores_the_argmax_of_the_decision_values_the_run_reports():
    features, y, groups = _random_five_classes()
    estimator = Pipeline([("scale", StandardScaler()), ("svm", SVC(kernel="linear"))])
    grid = [0.01, 1.0]

    selected = select_svm(estimator, features, y, groups, grid, n_folds=4, seed=3, param="svm__C")

    folds = StratifiedGroupKFold(n_splits=grouped_folds(y, groups, 4), shuffle=True, random_state=3)
    disagreements = 0
    for C in grid:
        argmax_hits = []
        for train, test in folds.split(features, y, groups):
            fitted = estimator.set_params(svm__C=C).fit(features[train], y[train])
            reported = decision_scores(fitted, features[test], 5).argmax(axis=1)  # what predictions.csv holds
            argmax_hits.append(np.mean(reported == y[test]))
            disagreements += int((reported != fitted.predict(features[test])).sum())  # one-vs-one votes
        assert selected.cv_accuracy[C] == pytest.approx(np.mean(argmax_hits))
    assert disagreements > 0  # the two rules differ on this data: scoring SVC.predict would score another rule
