"""QA grid: aligned faces with their landmarks drawn, to check the alignment by eye."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from facediag.preprocess.face_results import FaceResult

LANDMARK_COLOUR = (0, 255, 0)
FLAG_COLOUR = (255, 64, 64)
LABEL_HEIGHT = 18


def choose_for_grid(results: Sequence[FaceResult], n: int) -> list[FaceResult]:
    """Up to ``n`` results with crops: flagged ones first (centre crop, upsampled), then evenly spaced "ok"."""
    usable = [r for r in results if r.has_crop]
    flagged = [r for r in usable if r.fallback]
    plain = [r for r in usable if not r.fallback]
    chosen = flagged[:n]
    room = n - len(chosen)
    if room > 0 and plain:
        picks = np.unique(np.linspace(0, len(plain) - 1, num=min(room, len(plain))).round().astype(int))
        chosen += [plain[i] for i in picks]
    return chosen


def draw_grid(
    crops: np.ndarray,
    landmarks: Sequence[np.ndarray | None],
    results: Sequence[FaceResult],
    columns: int | None = None,
) -> np.ndarray:
    """Tile RGB crops (K, S, S, 3) with landmark dots (crop pixels) and a label; returns RGB uint8."""
    count = len(crops)
    if count == 0:
        blank = np.full((LABEL_HEIGHT * 2, 320, 3), 255, dtype=np.uint8)
        cv2.putText(blank, "no aligned faces", (6, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        return blank
    size = crops.shape[1]
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    tile_h = size + LABEL_HEIGHT
    grid = np.full((rows * tile_h, columns * size, 3), 255, dtype=np.uint8)
    radius = max(1, size // 110)
    for k, (crop, points, result) in enumerate(zip(crops, landmarks, results, strict=True)):
        tile = np.ascontiguousarray(crop.copy())
        if points is not None:
            for x, y in points:
                cv2.circle(tile, (round(float(x)), round(float(y))), radius, LANDMARK_COLOUR, -1, cv2.LINE_AA)
        top, left = (k // columns) * tile_h, (k % columns) * size
        grid[top : top + size, left : left + size] = tile
        flagged = bool(result.fallback)
        label = Path(result.path).name + (f" [{result.fallback}]" if flagged else "")
        colour = FLAG_COLOUR if flagged else (0, 0, 0)
        scale = min(0.4, 0.4 * size / max(1, 7 * len(label)))
        scale = max(scale, 0.28)
        baseline = top + size + LABEL_HEIGHT - 5
        cv2.putText(grid, label, (left + 3, baseline), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)
        if flagged:
            cv2.rectangle(grid, (left, top), (left + size - 1, top + size - 1), FLAG_COLOUR, 2)
    return grid


def write_png(image_rgb: np.ndarray, path: str | os.PathLike) -> None:
    """Write an RGB array as PNG, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
