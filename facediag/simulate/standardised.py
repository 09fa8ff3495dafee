"""Each descriptor's measure on a simulated photo, standardised: the ``measure_<name>`` columns of ``truth.csv``.

Geometric descriptors are measured on the photo's final (warped, posed) landmarks, the appearance one (skin
yellowness) on the encoded JPEG; every value is standardised by the source table (``conditions.csv``: mean, SD
over the source faces) and signed so that the condition raises it. :mod:`facediag.simulate.tree` writes them;
:mod:`facediag.simulate.measures` replays older trees and computes a design's ceiling.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from facediag.simulate.anatomy import named_points
from facediag.simulate.conditions import CONDITIONS, Condition, descriptors_of

PREFIX = "measure_"


def standardise(raw: dict[str, float], table: pd.DataFrame) -> dict[str, float]:
    """``measure_<descriptor>`` -> sign x (value - mean) / SD (mean, SD: the source table) of raw measures."""
    stats = table.set_index("condition")
    return {PREFIX + name: round(CONDITIONS[name].sign * (value - stats.loc[name, "mean"]) / stats.loc[name, "sd"], 5)
            for name, value in raw.items()}  # fmt: skip


def standardised_measures(
    conditions: Sequence[Condition], table: pd.DataFrame, points: np.ndarray, photo: str | os.PathLike
) -> dict[str, float]:
    """``measure_<descriptor>`` for every descriptor of ``conditions``: geometric ones on ``points``, skin
    yellowness on ``photo`` (read only when the tree has it)."""
    from facediag.core.imageio import read_rgb
    from facediag.simulate.appearance import skin_yellowness

    descriptors = descriptors_of(conditions)
    image = read_rgb(photo) if any(d.kind == "appearance" for d in descriptors) else None
    named = named_points(points)
    return standardise({d.name: skin_yellowness(image, points) if d.kind == "appearance" else d.measure(named)
                        for d in descriptors}, table)  # fmt: skip
