"""ROC inputs ranked like facediag.metrics ranks them for its AUC, and the one figure facediag.plots lacks.

Curves are drawn by ``facediag.plots.plot_roc`` (binary and one-vs-rest curves from labels + scores).
A multiclass sweep overlays one macro-averaged one-vs-rest curve per row, which is not a labels + scores
curve: :func:`plot_roc_curves` draws such precomputed curves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_curve

from facediag.metrics import class_ranking_scores  # the AUC ranking convention, kept in one place

RocInput = tuple[str, np.ndarray, np.ndarray]  # facediag.plots' curve: (label, y_true 0/1, score)


@dataclass
class RocCurve:
    """A computed ROC curve: false / true positive rates and its area."""

    label: str
    fpr: np.ndarray
    tpr: np.ndarray
    auc: float


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
            fpr, tpr, _ = roc_curve(is_class, ranking)
            curves.append(RocCurve(label, fpr, tpr, float(np.trapezoid(tpr, fpr))))
    return curves


def macro_roc(curves: Sequence[RocCurve], label: str) -> RocCurve | None:
    """The macro-average of one-vs-rest curves: mean TPR on the union of their FPR points."""
    if not curves:
        return None
    grid = np.unique(np.concatenate([c.fpr for c in curves]))
    tpr = np.mean([np.interp(grid, c.fpr, c.tpr) for c in curves], axis=0)
    return RocCurve(label, grid, tpr, float(np.trapezoid(tpr, grid)))


def plot_roc_curves(curves: Sequence[RocCurve], png: str | Path, title: str = "ROC") -> Path:
    """Precomputed ROC curves overlaid (legend: label and AUC), in facediag.plots' style."""
    from matplotlib.figure import Figure

    from facediag.plots import save_figure

    if not curves:
        raise ValueError("plot_roc_curves: no curves given")
    figure = Figure(figsize=(5.5, 5.0), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance (AUC = 0.500)")
    for curve in curves:
        axes.plot(curve.fpr, curve.tpr, linewidth=2, label=f"{curve.label} (AUC = {curve.auc:.3f})")
    axes.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), xlabel="false positive rate (1 - specificity)",
             ylabel="true positive rate (sensitivity)", title=title)
    axes.set_aspect("equal")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    return save_figure(figure, png)
