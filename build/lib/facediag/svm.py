"""SVM fitting with C chosen by subject-grouped cross-validation inside the training part only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold


@dataclass
class SelectedSVM:
    """The refitted estimator, the chosen C and the grouped-CV accuracy of every C tried."""

    estimator: Any
    C: float
    cv_accuracy: dict[float, float]


def grouped_folds(y: np.ndarray, groups: np.ndarray, n_folds: int) -> int:
    """As many folds as requested, but never more than the groups of the rarest class allow."""
    per_class = [len(set(groups[y == c])) for c in np.unique(y)]
    return max(2, min(n_folds, min(per_class)))


def select_svm(
    estimator: BaseEstimator,
    features: np.ndarray,
    y: np.ndarray,
    groups: Sequence[str],
    C_grid: Sequence[float],
    n_folds: int = 5,
    seed: int = 0,
    param: str = "C",
) -> SelectedSVM:
    """Grid-search C with StratifiedGroupKFold (a person never in two folds), refit on all given rows.

    Even a single C is cross-validated: its grouped-CV accuracy is the run's validation score.

    ``param`` is the name of C inside ``estimator`` (e.g. ``svm__C`` in a Pipeline).
    """
    groups = np.asarray(groups)
    grid = [float(c) for c in C_grid]
    cv = StratifiedGroupKFold(n_splits=grouped_folds(y, groups, n_folds), shuffle=True, random_state=seed)
    search = GridSearchCV(clone(estimator), {param: grid}, cv=cv, scoring="accuracy", refit=True)
    search.fit(features, y, groups=groups)
    scores = dict(zip(grid, map(float, search.cv_results_["mean_test_score"]), strict=True))
    return SelectedSVM(search.best_estimator_, float(search.best_params_[param]), scores)


def decision_scores(estimator: Any, features: np.ndarray, n_classes: int) -> np.ndarray:
    """(N, C) per-class scores whose argmax is the SVM's prediction (binary: [-d, d])."""
    decision = np.asarray(estimator.decision_function(features), dtype=np.float64)
    if decision.ndim == 1:
        return np.column_stack([-decision, decision])
    if decision.shape[1] != n_classes:
        raise ValueError(f"decision_function gave {decision.shape[1]} columns for {n_classes} classes")
    return decision
