"""Class labels to indices: one definition of the order every score column and target follows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def class_index(classes: Sequence[str]) -> dict[str, int]:
    """``{class name: position}`` in the order of ``classes`` (the order of score columns and targets)."""
    return {name: i for i, name in enumerate(classes)}


def encode_labels(labels: Iterable[str], classes: Sequence[str]) -> np.ndarray:
    """int64 class indices of ``labels``; a label outside ``classes`` is a ValueError naming it."""
    index = class_index(classes)
    labels = list(labels)
    unknown = sorted({label for label in labels if label not in index})
    if unknown:
        raise ValueError(f"labels {unknown} are not among the classes {list(classes)}")
    return np.array([index[label] for label in labels], dtype=np.int64)
