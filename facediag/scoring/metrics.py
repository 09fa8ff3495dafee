"""Every classification metric, one code path for every strategy (DTL1, DTL2, DSIFT, evaluation).

Conventions (decided once, here):

* ``scores`` is an (N, C) array of per-class scores: probabilities or decision values / logits. The
  prediction is the row's argmax (ties go to the lowest class index).
* AUC ranks the samples of each class ``c`` by its probability ``scores[:, c]`` when rows are
  probabilities (non-negative, summing to 1), otherwise by the softmax log-odds
  ``scores[:, c] - logsumexp(scores[:, others])``, which orders samples exactly as the softmax
  probability does but never saturates to tied values of 1.0 for large decision values. In the binary
  case this is the margin ``scores[:, pos] - scores[:, neg]``, so SVM decision values ``d`` passed as
  ``np.column_stack([-d, d])`` give the usual SVM AUC.
* Binary tasks (C == 2): precision, sensitivity, specificity, F1 and AUC are those of the positive
  class (the disease; ``positive``, default ``classes[1]``).
* Multiclass tasks: precision, sensitivity, specificity and F1 are macro averages of the per-class
  values; AUC is one-vs-rest, macro-averaged. For probability rows it equals
  ``roc_auc_score(y, scores, multi_class="ovr", average="macro")``.
* scikit-learn's conventions, ``zero_division=0``: a rate whose denominator is empty is 0 (precision of
  a class never predicted, sensitivity of a class absent from ``y_true``, specificity when every sample
  is of that class), and macro averages run over scikit-learn's label set, the classes that occur in
  ``y_true`` or in the predictions (``precision_score(..., average="macro", zero_division=0)``): a model
  that never predicts a class is not flattered by leaving it out. Balanced accuracy is scikit-learn's
  (mean recall over the classes in ``y_true``). A per-class ``accuracy`` (recall) of a class without
  test samples and an AUC that cannot be computed (one class only) are ``None`` (JSON ``null``).
* ``top3_error`` is ``None`` when C <= 3: every prediction is then trivially in the top 3.
* Intervals (95%): ``<metric>_ci`` for accuracy, balanced accuracy, sensitivity, specificity and AUC,
  ``ci_methods`` names the method of each and ``accuracy_ci_method`` the accuracy's: a person-level
  cluster bootstrap when any person (``groups``) has more than one sample, widened for the proportions
  (accuracy; binary sensitivity / specificity) to contain the Wilson interval at the effective number of
  people they count (valid and monotone near 0 and 1); Wilson score intervals for those proportions with
  one sample per person; balanced accuracy and AUC are bootstrapped only (see facediag.scoring.stats).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

# the interval and the AUC ranking convention live in facediag.scoring.stats (metrics imports stats, never the reverse)
from facediag.scoring.stats import (
    INTERVAL_METRICS,
    class_ranking_scores,
    metric_intervals,
    weighted_auc,
    wilson_interval,
)

__all__ = ["wilson_interval", "classification_metrics", "class_ranking_scores"]


def _defined(value: float) -> float | None:
    """A JSON-friendly float, or None for NaN / infinity."""
    value = float(value)
    return value if math.isfinite(value) else None


def _mean_defined(values: Sequence[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def _check_inputs(
    y_true: np.ndarray, scores: np.ndarray, classes: Sequence[str], positive: str | None
) -> tuple[np.ndarray, np.ndarray, int | None]:
    classes = list(classes)
    n_classes = len(classes)
    if n_classes < 2:
        raise ValueError(f"classification_metrics: need at least 2 classes, got {classes}")
    if len(set(classes)) != n_classes:
        raise ValueError(f"classification_metrics: duplicate class names in {classes}")
    y_true = np.asarray(y_true)
    scores = np.asarray(scores, dtype=np.float64)
    if y_true.ndim != 1 or y_true.size == 0:
        raise ValueError(
            f"classification_metrics: y_true must be a non-empty 1-D array, got shape {y_true.shape}"
        )
    if not np.issubdtype(y_true.dtype, np.integer):
        if not np.all(np.isfinite(y_true.astype(np.float64))) or np.any(y_true != np.round(y_true)):
            raise ValueError("classification_metrics: y_true must hold integer class indices")
        y_true = y_true.astype(np.int64)
    if y_true.min() < 0 or y_true.max() >= n_classes:
        raise ValueError(
            f"classification_metrics: y_true holds indices outside [0, {n_classes - 1}] "
            f"(min {y_true.min()}, max {y_true.max()}) for classes {classes}"
        )
    if scores.shape != (y_true.size, n_classes):
        hint = " (binary SVM decision values d: pass np.column_stack([-d, d]))" if scores.ndim == 1 else ""
        raise ValueError(
            f"classification_metrics: scores must have shape (N, C) = ({y_true.size}, {n_classes}), "
            f"got {scores.shape}{hint}"
        )
    if not np.all(np.isfinite(scores)):
        raise ValueError("classification_metrics: scores contain NaN or infinite values")
    positive_index: int | None = None
    if positive is not None:
        if positive not in classes:
            raise ValueError(f"classification_metrics: positive class {positive!r} is not one of {classes}")
        positive_index = classes.index(positive)
    elif n_classes == 2:
        positive_index = 1
    return y_true.astype(np.int64), scores, positive_index


def _binary_auc(is_positive: np.ndarray, ranking_score: np.ndarray) -> float | None:
    """scikit-learn's ``roc_auc_score`` (ties count one half), None with one class only."""
    if is_positive.all() or not is_positive.any():
        return None
    return float(weighted_auc(np.ones((1, is_positive.size)), is_positive, ranking_score)[0])


def _ratios(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator``, 0 where the denominator is 0 (scikit-learn's ``zero_division=0``)."""
    return np.where(denominator > 0, numerator / np.maximum(denominator, 1), 0.0)


def _top_k_hits(y_true: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Whether each true class is among the ``k`` highest scores (ties as ``top_k_accuracy_score`` breaks them)."""
    ranked = np.argsort(scores, axis=1, kind="mergesort")[:, ::-1][:, :k]
    return (ranked == y_true[:, None]).any(axis=1)


def classification_metrics(
    y_true: np.ndarray | Sequence[int],
    scores: np.ndarray,
    classes: Sequence[str],
    positive: str | None = None,
    groups: Sequence[Any] | None = None,
    *,
    intervals_wanted: bool = True,
) -> dict[str, Any]:
    """All metrics of a set of predictions, as JSON-serialisable values (see the module docstring).

    ``y_true``: (N,) integer class indices into ``classes``; ``scores``: (N, C) per-class scores whose
    row argmax is the prediction; ``positive``: the positive (disease) class of a binary task;
    ``groups``: the person of each sample (None: one sample per person). ``intervals_wanted=False`` skips
    the intervals (``*_ci`` None), e.g. for per-fold confusion matrices.
    """
    y_true, scores, positive_index = _check_inputs(np.asarray(y_true), scores, classes, positive)
    classes = list(classes)
    n_classes = len(classes)
    labels = np.arange(n_classes)
    y_pred = scores.argmax(axis=1)
    n = int(y_true.size)
    n_correct = int((y_pred == y_true).sum())

    # scikit-learn's definitions (precision_recall_fscore_support, balanced_accuracy_score, top_k_accuracy_score with
    # zero_division=0) from one confusion matrix: its input checks cost ~40 ms a call, checked equal in test_metrics
    confusion = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    true_positives, support, predicted = np.diag(confusion), confusion.sum(axis=1), confusion.sum(axis=0)
    precision = _ratios(true_positives, predicted)
    recall = _ratios(true_positives, support)
    f1 = _ratios(2 * true_positives, support + predicted)
    negatives = n - support
    specificity = _ratios(n - support - predicted + true_positives, negatives)
    in_label_set = (support + predicted) > 0  # scikit-learn's macro-average classes
    class_ranking = class_ranking_scores(scores)
    per_class_auc = [_binary_auc(y_true == c, class_ranking[:, c]) for c in labels]

    per_class = {
        name: {
            "precision": _defined(precision[c]),
            "sensitivity": _defined(recall[c]),
            "specificity": _defined(specificity[c]),
            "f1": _defined(f1[c]),
            "accuracy": _defined(recall[c]) if support[c] > 0 else None,
            "auc": per_class_auc[c],
            "n": int(support[c]),
        }
        for c, name in enumerate(classes)
    }

    if n_classes == 2:
        assert positive_index is not None
        block = per_class[classes[positive_index]]
        summary = {key: block[key] for key in ("precision", "sensitivity", "specificity", "f1")}
        auc = block["auc"]
    else:
        summary = {
            key: float(np.mean([per_class[name][key] for c, name in enumerate(classes) if in_label_set[c]]))
            for key in ("precision", "sensitivity", "specificity", "f1")
        }
        auc = _mean_defined(per_class_auc)

    balanced_accuracy = float(np.mean(recall[support > 0]))  # the classes in y_true
    accuracy = n_correct / n
    if n_classes > 3:
        top3_error: float | None = 1.0 - float(np.mean(_top_k_hits(y_true, scores, 3)))
    else:
        top3_error = None
    intervals, methods = metric_intervals(y_true, scores, positive_index, groups) if intervals_wanted else ({}, {})
    return {
        "classes": classes,
        "positive": classes[positive_index] if positive_index is not None else None,
        "n": n,
        "n_correct": n_correct,
        "accuracy": accuracy,
        "accuracy_ci": intervals.get("accuracy"),
        "accuracy_ci_method": methods.get("accuracy"),
        **summary,
        "balanced_accuracy": _defined(balanced_accuracy),
        "auc": auc,
        **{f"{key}_ci": intervals.get(key) for key in INTERVAL_METRICS if key != "accuracy"},
        "ci_methods": methods,
        "zero_division": 0,
        "top1_error": 1.0 - accuracy,
        "top3_error": top3_error,
        "confusion_matrix": confusion.astype(int).tolist(),
        "per_class": per_class,
    }
