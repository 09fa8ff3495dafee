"""Confusion-matrix and ROC figures: PNG files of the expected size, arrays for TensorBoard."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from facediag.scoring.plots import (
    confusion_matrix_figure,
    figure_to_array,
    plot_confusion_matrix,
    plot_roc,
    roc_figure,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        return image.size


def _is_drawn(pixels: np.ndarray) -> bool:
    """More than a blank canvas: many dark pixels and more than a handful of distinct colours."""
    return (pixels.min(axis=2) < 100).mean() > 0.005 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20


def test_confusion_matrix_png_is_written_with_the_figure_size(tmp_path):
    path = plot_confusion_matrix([[8, 2], [1, 9]], ["healthy", "disease"], tmp_path / "sub" / "cm.png", "test set")
    assert path == tmp_path / "sub" / "cm.png"
    assert path.stat().st_size > 5_000
    # Two classes: a 5.2 x 4 inch figure at 100 dpi.
    assert _png_size(path) == (520, 400)
    with Image.open(path) as image:
        assert _is_drawn(np.asarray(image.convert("RGB")))


def test_confusion_matrix_figure_grows_with_the_number_of_classes(tmp_path):
    classes = ["beta-thalassemia", "down syndrome", "fragile x", "leprosy", "healthy"]
    matrix = np.diag([5, 13, 4, 12, 10]) + 1
    path = plot_confusion_matrix(matrix, classes, tmp_path / "cm5.png", "5 classes", normalize=True)
    side = 1.0 + 0.9 * 5
    assert _png_size(path) == (round((side + 1.2) * 100), round(side * 100))


def test_counts_and_row_normalised_colours_differ():
    matrix = [[90, 10], [1, 4]]  # rows of very different size: colours by count differ from colours by row %
    by_count = figure_to_array(confusion_matrix_figure(matrix, ["a", "b"], normalize=False))
    by_row = figure_to_array(confusion_matrix_figure(matrix, ["a", "b"], normalize=True))
    assert by_count.shape == by_row.shape
    assert (by_count != by_row).any(axis=2).mean() > 0.05


def test_fractional_fold_averaged_matrices_are_accepted(tmp_path):
    path = plot_confusion_matrix([[0.8, 0.2], [0.15, 0.85]], ["neutral", "smiling"], tmp_path / "cm.png", "mean")
    assert path.stat().st_size > 5_000


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        ([[1, 2, 3], [4, 5, 6]], "one row per class"),
        ([[1, -1], [0, 2]], "non-negative"),
        ([[1, np.nan], [0, 2]], "finite"),
    ],
)
def test_bad_confusion_matrices_raise_a_clear_error(tmp_path, matrix, message):
    with pytest.raises(ValueError, match=message):
        plot_confusion_matrix(matrix, ["a", "b"], tmp_path / "cm.png", "bad")
    assert not (tmp_path / "cm.png").exists()


def test_figure_to_array_gives_uint8_rgb_for_tensorboard():
    pixels = figure_to_array(confusion_matrix_figure([[3, 1], [0, 4]], ["a", "b"]))
    assert pixels.dtype == np.uint8 and pixels.shape == (400, 520, 3)
    assert pixels.flags.c_contiguous
    assert _is_drawn(pixels)


def test_roc_png_overlays_several_curves(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 30)
    curves = [
        ("good", labels, labels + rng.normal(0, 0.5, 60)),
        ("weak", labels, labels + rng.normal(0, 2.0, 60)),
    ]
    path = plot_roc(curves, tmp_path / "roc.png")
    assert path.stat().st_size > 10_000
    assert _png_size(path) == (550, 500)


def test_roc_legend_reports_each_auc_and_flags_undefined_curves():
    labels = np.array([0, 0, 1, 1])
    figure = roc_figure([("perfect", labels, [0.1, 0.2, 0.8, 0.9]), ("one class", [1, 1, 1], [0.2, 0.5, 0.9])])
    legend = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert legend == ["chance (AUC = 0.500)", "perfect (AUC = 1.000)", "one class (AUC undefined: one class only)"]


@pytest.mark.parametrize(
    ("curves", "message"),
    [
        ([], "no curves"),
        ([("x", [0, 1, 1], [0.1, 0.2])], "one length"),
        ([("x", [0, 2], [0.1, 0.2])], "binary labels"),
        ([("x", [0, 1], [0.1, np.inf])], "infinite"),
    ],
)
def test_bad_roc_curves_raise_a_clear_error(tmp_path, curves, message):
    with pytest.raises(ValueError, match=message):
        plot_roc(curves, tmp_path / "roc.png")
