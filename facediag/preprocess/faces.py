"""``Faces``: the one record that flows from preprocessing to features to a classifier.

One value per request "these images, this crop": the rows that got a face (the caller's table rows: a split's
``path, label, subject, role, sha256, ...``, or just ``path``), each row's preprocessing result, its aligned crop
and its landmarks in crop pixels, all in the same order, with the :class:`~facediag.core.crop.CropSpec` they were
made for and the preprocessing result of every image asked for (the ones without a face too, for the report).
Stages take a ``Faces`` and read what they need; nothing is matched up again by path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from facediag.core.crop import CropSpec
from facediag.preprocess.face_results import FaceResult


@dataclass(frozen=True, eq=False)
class Faces:
    """Images that got a face crop, one per row of ``rows``.

    ``kept``: the rows' preprocessing results; ``crops``: uint8 (N, size, size, 3), None when only landmarks were
    asked for; ``landmarks``: float32 (N, 68, 2) in crop pixels (NaN for a centre-crop fallback), None when not
    asked for; ``results``: one result per image asked for, in the order asked (the preprocessing report's rows).
    """

    crop: CropSpec
    rows: pd.DataFrame
    kept: tuple[FaceResult, ...]
    crops: np.ndarray | None = None
    landmarks: np.ndarray | None = None
    results: tuple[FaceResult, ...] = ()

    def __post_init__(self) -> None:
        sizes = {len(self.rows), len(self.kept)}
        sizes |= {len(a) for a in (self.crops, self.landmarks) if a is not None}
        if len(sizes) != 1:
            raise ValueError(f"Faces: rows, results, crops and landmarks differ in length ({sorted(sizes)})")

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def paths(self) -> list[str]:
        return [str(p) for p in self.rows["path"]]


def as_rows(images: Any) -> pd.DataFrame:
    """The table of ``images``: a table with a ``path`` column as it is (its other columns ride along, a
    ``sha256`` column saves hashing the file again), else a ``path`` column of the given paths."""
    if isinstance(images, pd.DataFrame):
        if "path" not in images.columns:
            raise ValueError("a table of images needs a 'path' column")
        return images.reset_index(drop=True)
    return pd.DataFrame({"path": [str(p) for p in images]})
