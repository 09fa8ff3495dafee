"""ROC inputs ranked like facediag.scoring.metrics ranks them for its AUC, and macro-averaged one-vs-rest curves.

Every curve is drawn by ``facediag.scoring.plots.plot_roc`` (labels + scores, or a computed ``RocCurve`` such as
the macro average a multiclass sweep overlays per row).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from facediag.scoring.metrics import class_ranking_scores  # the AUC ranking convention, kept in one place
from facediag.scoring.plots import RocCurve, RocInput, compute_roc


def roc_inputs(
    y_true: np.ndarray, scores: np.ndarray, classes: Sequence[str], positive: str | None = None
) -> list[RocInput]:
    """``(label, is_class, ranking score)`` per curve: binary, the positive class; multiclass, every class
    (one vs rest). Samples are ranked exactly as ``classification_metrics`` ranks them, so areas agree."""
    classes = list(classes)
    y_true = np.asarray(y_true)
    ranking = class_ranking_scores(np.asarray(scores, dtype=np.float64))
    if len(classes) == 2:
        index = classes.index(positive) if positive is not None else 1
        return [(classes[index], (y_true == index).astype(int), ranking[:, index])]
    return [(name, (y_true == c).astype(int), ranking[:, c]) for c, name in enumerate(classes)]


def roc_curves(
    y_true: np.ndarray, scores: np.ndarray, classes: Sequence[str], positive: str | None = None
) -> list[RocCurve]:
    """The curves of :func:`roc_inputs`, computed; classes absent from (or alone in) ``y_true`` are left out."""
    curves = []
    for label, is_class, ranking in roc_inputs(y_true, scores, classes, positive):
        if 0 < is_class.sum() < len(is_class):
            curves.append(compute_roc(label, is_class, ranking))
    return curves


def macro_roc(curves: Sequence[RocCurve], label: str) -> RocCurve | None:
    """The macro-average of one-vs-rest curves: mean TPR on the union of their FPR points."""
    if not curves:
        return None
    grid = np.unique(np.concatenate([c.fpr for c in curves]))
    tpr = np.mean([np.interp(grid, c.fpr, c.tpr) for c in curves], axis=0)
    return RocCurve(label, grid, tpr, float(np.trapezoid(tpr, grid)))
