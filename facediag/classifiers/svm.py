"""SVM fitting with C chosen by subject-grouped cross-validation inside the training part only.

scikit-learn is imported where an SVM is fitted: ``decision_scores`` (what applying a run needs) is numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# what a select_svm run's validation score is (metrics.json ``val_source``)
VAL_SOURCE = "person-grouped CV accuracy on the training part (chosen C)"


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


def person_folds(y: np.ndarray, groups: Sequence[str], n_folds: int, seed: int) -> Any:
    """The person-grouped stratified folds of every inner CV (C, Platt scaling, fusion rules): a
    ``StratifiedGroupKFold`` with as many folds as requested but never more than the rarest class's people allow,
    shuffled by ``seed`` (a person never on both sides)."""
    from sklearn.model_selection import StratifiedGroupKFold

    folds = grouped_folds(np.asarray(y), np.asarray(groups), n_folds)
    return StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)


def argmax_accuracy(estimator: Any, features: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of the reported prediction: the argmax of :func:`decision_scores` (a GridSearchCV scorer).

    ``SVC.predict`` counts one-vs-one votes and breaks ties by class order, while the reported prediction is
    the argmax of the one-vs-rest decision values; scoring C with this rule makes selection and reporting agree.
    """
    classes = np.asarray(estimator.classes_)
    scores = decision_scores(estimator, features, len(classes))
    return float(np.mean(classes[scores.argmax(axis=1)] == np.asarray(y)))


def select_svm(
    estimator: Any,
    features: np.ndarray,
    y: np.ndarray,
    groups: Sequence[str],
    C_grid: Sequence[float],
    n_folds: int = 5,
    seed: int = 0,
    param: str = "C",
) -> SelectedSVM:
    """Grid-search C with StratifiedGroupKFold (a person never in two folds), refit on all given rows.

    Even a single C is cross-validated: its grouped-CV accuracy is the run's validation score. Folds are
    scored with :func:`argmax_accuracy`, the decision rule every prediction is reported with.

    ``param`` is the name of C inside ``estimator`` (e.g. ``svm__C`` in a Pipeline).
    """
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV

    groups = np.asarray(groups)
    grid = [float(c) for c in C_grid]
    cv = person_folds(y, groups, n_folds, seed)
    search = GridSearchCV(clone(estimator), {param: grid}, cv=cv, scoring=argmax_accuracy, refit=True)
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
