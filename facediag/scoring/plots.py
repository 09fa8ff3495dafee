"""Figures for run dirs, reports and TensorBoard: confusion matrix and ROC curves.

Figures are drawn on the non-interactive Agg canvas (no pyplot state, safe in worker threads) and come
in two forms: ``*_figure`` returns a matplotlib ``Figure`` (``figure_to_array`` turns it into the uint8
RGB (H, W, 3) array TensorBoard's ``add_image(..., dataformats="HWC")`` takes), and ``plot_*`` writes
a PNG and returns its path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score, roc_curve

__all__ = [
    "confusion_matrix_figure",
    "plot_confusion_matrix",
    "roc_figure",
    "plot_roc",
    "compute_roc",
    "RocCurve",
    "figure_to_array",
    "save_figure",
    "image_grid",
]

RocInput = tuple[str, np.ndarray | Sequence[int], np.ndarray | Sequence[float]]  # (label, y_true 0/1, score)


@dataclass
class RocCurve:
    """A computed ROC curve: false / true positive rates and its area (None: one class only, undefined)."""

    label: str
    fpr: np.ndarray
    tpr: np.ndarray
    auc: float | None


def compute_roc(label: str, y_true: np.ndarray | Sequence[int], score: np.ndarray | Sequence[float]) -> RocCurve:
    """The ROC curve of binary labels (1 = positive) and scores (higher = more positive), checked."""
    y_true, score = np.asarray(y_true), np.asarray(score, dtype=np.float64)
    if y_true.ndim != 1 or y_true.shape != score.shape:
        raise ValueError(
            f"plot_roc: curve {label!r} needs 1-D labels and scores of one length, got {y_true.shape} and {score.shape}"
        )
    if not set(np.unique(y_true).tolist()) <= {0, 1}:
        raise ValueError(f"plot_roc: curve {label!r} needs binary labels 0/1, got {np.unique(y_true)[:5]}")
    if not np.all(np.isfinite(score)):
        raise ValueError(f"plot_roc: curve {label!r} has NaN or infinite scores")
    if len(np.unique(y_true)) < 2:
        return RocCurve(label, np.zeros(0), np.zeros(0), None)
    false_positive_rate, true_positive_rate, _ = roc_curve(y_true, score)
    return RocCurve(label, false_positive_rate, true_positive_rate, float(roc_auc_score(y_true, score)))


def image_grid(
    pictures: Sequence[np.ndarray | None],
    captions: Sequence[str],
    columns: int,
    title: str | None = None,
    row_labels: Sequence[str] | None = None,
    cell: tuple[float, float] = (2.3, 2.7),
    caption_size: float = 8,
    dpi: int = 90,
) -> Figure:
    """Images in a grid, row by row, each with its caption (None: an empty cell); optional title and row labels."""
    rows = max(1, -(-len(pictures) // max(1, columns)), len(row_labels or []))
    columns = max(1, min(columns, len(pictures)))
    figure = Figure(figsize=(cell[0] * columns, cell[1] * rows + (0.4 if title else 0)), dpi=dpi, layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, picture, caption in zip(axes.ravel(), pictures, captions, strict=False):
        if picture is not None:
            ax.imshow(picture)
            ax.set_title(caption, fontsize=caption_size)
    for ax, label in zip(axes[:, 0], row_labels or [], strict=False):
        ax.text(-0.1, 0.5, label, transform=ax.transAxes, ha="right", va="center", fontsize=9)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def figure_to_array(figure: Figure) -> np.ndarray:
    """Render a figure to a uint8 RGB array (H, W, 3)."""
    canvas = figure.canvas if isinstance(figure.canvas, FigureCanvasAgg) else FigureCanvasAgg(figure)
    canvas.draw()
    return np.ascontiguousarray(np.asarray(canvas.buffer_rgba())[:, :, :3])


def save_figure(figure: Figure, path: str | os.PathLike, tight: bool = False) -> Path:
    """Write a figure as PNG (parent folders created) and return the path; ``tight``: grown or trimmed to what
    it draws (a figure legend wider than the axes is not clipped)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, format="png", dpi=figure.dpi, bbox_inches="tight" if tight else None)
    return path


def _check_confusion_matrix(cm: np.ndarray | Sequence[Sequence[float]], classes: Sequence[str]) -> np.ndarray:
    matrix = np.asarray(cm, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape != (len(classes), len(classes)):
        raise ValueError(
            f"confusion matrix must be square with one row per class ({len(classes)} classes: {list(classes)}), "
            f"got shape {matrix.shape}"
        )
    if not np.all(np.isfinite(matrix)) or np.any(matrix < 0):
        raise ValueError("confusion matrix entries must be finite and non-negative")
    return matrix


def _format_count(value: float) -> str:
    return f"{int(round(value))}" if float(value).is_integer() else f"{value:.2f}"


def confusion_matrix_figure(
    cm: np.ndarray | Sequence[Sequence[float]],
    classes: Sequence[str],
    title: str = "Confusion matrix",
    normalize: bool = False,
    dpi: int = 100,
) -> Figure:
    """Confusion matrix (rows = true class, columns = predicted): each cell shows the count and its row %.

    Colours follow the counts, or the row-normalised fractions when ``normalize`` (then the % is shown
    first). Fractional entries (e.g. fold-averaged matrices) are shown with two decimals.
    """
    matrix = _check_confusion_matrix(cm, classes)
    row_totals = matrix.sum(axis=1, keepdims=True)
    row_fraction = np.divide(matrix, row_totals, out=np.zeros_like(matrix), where=row_totals > 0)
    n_classes = len(classes)
    side = max(4.0, 1.0 + 0.9 * n_classes)
    figure = Figure(figsize=(side + 1.2, side), dpi=dpi, layout="constrained")
    axes = figure.add_subplot()
    shown = row_fraction if normalize else matrix
    vmax = 1.0 if normalize else max(float(matrix.max()), 1.0)
    image = axes.imshow(shown, cmap="Blues", vmin=0.0, vmax=vmax)
    colorbar = figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    colorbar.set_label("fraction of the true class" if normalize else "count")
    font_size = 11 if n_classes <= 5 else 8
    for row in range(n_classes):
        for column in range(n_classes):
            count, percent = _format_count(matrix[row, column]), f"{100 * row_fraction[row, column]:.0f}%"
            text = f"{percent}\n({count})" if normalize else f"{count}\n({percent})"
            dark_cell = shown[row, column] > 0.55 * vmax
            axes.text(
                column, row, text, ha="center", va="center", fontsize=font_size, color="white" if dark_cell else "black"
            )
    axes.set_xticks(
        range(n_classes),
        labels=list(classes),
        rotation=30 if n_classes > 3 else 0,
        ha="right" if n_classes > 3 else "center",
    )
    axes.set_yticks(range(n_classes), labels=list(classes))
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(title)
    return figure


def plot_confusion_matrix(
    cm: np.ndarray | Sequence[Sequence[float]],
    classes: Sequence[str],
    path: str | os.PathLike,
    title: str = "Confusion matrix",
    normalize: bool = False,
) -> Path:
    """Write the confusion-matrix figure (see ``confusion_matrix_figure``) as PNG; return its path."""
    return save_figure(confusion_matrix_figure(cm, classes, title=title, normalize=normalize), path)


def roc_figure(curves: Sequence[RocCurve | RocInput], title: str = "ROC", dpi: int = 100) -> Figure:
    """ROC curves overlaid, AUC in the legend; a curve whose labels hold one class is listed as undefined.

    Each curve is a computed ``RocCurve`` (e.g. a macro average) or ``(label, y_true_binary, score)``:
    1 = positive class, higher score = more positive.
    """
    if not curves:
        raise ValueError("plot_roc: no curves given")
    figure = Figure(figsize=(5.5, 5.0), dpi=dpi, layout="constrained")
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance (AUC = 0.500)")
    for curve in curves:
        curve = curve if isinstance(curve, RocCurve) else compute_roc(*curve)
        if curve.auc is None:
            axes.plot([], [], label=f"{curve.label} (AUC undefined: one class only)")
            continue
        axes.plot(curve.fpr, curve.tpr, linewidth=2, label=f"{curve.label} (AUC = {curve.auc:.3f})")
    axes.set_xlim(-0.01, 1.01)
    axes.set_ylim(-0.01, 1.01)
    axes.set_aspect("equal")
    axes.set_xlabel("false positive rate (1 - specificity)")
    axes.set_ylabel("true positive rate (sensitivity)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    return figure


def plot_roc(curves: Sequence[RocCurve | RocInput], path: str | os.PathLike, title: str = "ROC") -> Path:
    """Write the overlaid ROC curves (see ``roc_figure``) as PNG; return its path."""
    return save_figure(roc_figure(curves, title=title), path)
