"""ROC curves (one code path with facediag.metrics' AUC convention) and the report's figures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_curve

from facediag.metrics import _class_ranking_scores  # the AUC ranking convention, kept in one place


@dataclass
class RocCurve:
    """One ROC curve: false / true positive rates and its area (None when a class is absent)."""

    label: str
    fpr: np.ndarray
    tpr: np.ndarray
    auc: float | None


def _curve(is_positive: np.ndarray, ranking: np.ndarray, label: str) -> RocCurve | None:
    if is_positive.all() or not is_positive.any():
        return None
    fpr, tpr, _ = roc_curve(is_positive, ranking)
    return RocCurve(label, fpr, tpr, float(np.trapezoid(tpr, fpr)))


def roc_curves(
    y_true: np.ndarray, scores: np.ndarray, classes: Sequence[str], positive: str | None = None
) -> list[RocCurve]:
    """Binary: the positive class's curve; multiclass: one-vs-rest curves of every class present.

    Samples are ranked exactly as ``classification_metrics`` ranks them for its AUC, so the areas agree.
    """
    classes = list(classes)
    y_true = np.asarray(y_true)
    ranking = _class_ranking_scores(np.asarray(scores, dtype=np.float64))
    if len(classes) == 2:
        index = classes.index(positive) if positive is not None else 1
        curve = _curve(y_true == index, ranking[:, index], classes[index])
        return [curve] if curve is not None else []
    curves = [_curve(y_true == c, ranking[:, c], name) for c, name in enumerate(classes)]
    return [c for c in curves if c is not None]


def macro_roc(curves: Sequence[RocCurve], label: str) -> RocCurve | None:
    """The macro-average of one-vs-rest curves: mean TPR on the union of their FPR points."""
    if not curves:
        return None
    grid = np.unique(np.concatenate([c.fpr for c in curves]))
    tpr = np.mean([np.interp(grid, c.fpr, c.tpr) for c in curves], axis=0)
    return RocCurve(label, grid, tpr, float(np.trapezoid(tpr, grid)))


def plot_roc_curves(curves: Sequence[RocCurve], png: str | Path, title: str = "") -> Path:
    """Several ROC curves on one square plot (legend: label and AUC), with the chance diagonal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.0, 5.6), dpi=100)
    try:
        ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="chance")
        for curve in curves:
            auc = "n/a" if curve.auc is None else f"{curve.auc:.3f}"
            ax.plot(curve.fpr, curve.tpr, linewidth=1.6, label=f"{curve.label} (AUC {auc})")
        ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), xlabel="false positive rate (1 - specificity)",
               ylabel="true positive rate (sensitivity)", title=title)
        ax.set_aspect("equal")
        ax.legend(loc="lower right", fontsize="small" if len(curves) < 8 else "x-small")
        fig.tight_layout()
        fig.savefig(png)
    finally:
        plt.close(fig)
    return png


def plot_confusion(
    matrix: np.ndarray, classes: Sequence[str], png: str | Path, title: str = "", *, row_normalised: bool = False
) -> Path:
    """A confusion matrix (rows = true class) coloured by the rate within the true class: counts shown as
    ``count (rate)``; a ``row_normalised`` matrix as rates, NaN rows (class absent) as 'n/a'."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix, dtype=np.float64)
    counts = not row_normalised
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = matrix / matrix.sum(axis=1, keepdims=True) if counts else matrix
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    size = 2.2 + 0.75 * len(classes)
    fig, ax = plt.subplots(figsize=(size + 1.0, size), dpi=100)
    try:
        image = ax.imshow(np.ma.masked_invalid(rates), cmap="Blues", vmin=0.0, vmax=1.0)
        for (i, j), rate in np.ndenumerate(rates):
            text = "n/a" if not np.isfinite(rate) else f"{rate:.2f}"
            if counts:
                text = f"{int(matrix[i, j])}\n({text})"
            ax.text(j, i, text, ha="center", va="center", color="white" if rate > 0.5 else "black")
        ax.set_xticks(range(len(classes)), labels=list(classes), rotation=45, ha="right")
        ax.set_yticks(range(len(classes)), labels=list(classes))
        ax.set(xlabel="predicted class", ylabel="true class", title=title)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="rate within the true class")
        fig.tight_layout()
        fig.savefig(png)
    finally:
        plt.close(fig)
    return png
