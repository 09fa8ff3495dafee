"""The docs figure: every condition at 1 and 3 SD on one source face, with the region it changes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from facediag.core.errors import UserError
from facediag.simulate.anatomy import FaceFrame, named_points
from facediag.simulate.conditions import Condition
from facediag.simulate.source import Face
from facediag.simulate.tree import Settings, render

#: the face crop shown: a square of this many IPD, centred this far below the pupils
CROP_SIDE, CROP_DROP = 2.6, 0.55
TILE = 220


def face_crop(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The square around the face (eyes to chin), resized to ``TILE`` px."""
    import cv2

    frame = FaceFrame.of(named_points(points))
    centre = frame.origin + frame.y * CROP_DROP * frame.ipd
    half = CROP_SIDE * frame.ipd / 2
    x0, y0 = (centre - half).astype(int)
    x1, y1 = (centre + half).astype(int)
    crop = image[max(0, y0) : y1, max(0, x0) : x1]
    return cv2.resize(crop, (TILE, TILE), interpolation=cv2.INTER_AREA)


def outlined(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``image`` with ``mask`` tinted red and its edge drawn."""
    import cv2

    out = image.astype(np.float32)
    out[mask] = 0.7 * out[mask] + 0.3 * np.array([255, 0, 0], dtype=np.float32)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = np.clip(out, 0, 255).astype(np.uint8)
    cv2.drawContours(out, contours, -1, (255, 0, 0), 3)
    return out


def condition_figure(
    faces: Sequence[Face], table: pd.DataFrame, conditions: Sequence[Condition], path: Path, subject: str,
    strengths: Sequence[float] = (1.0, 3.0),
) -> Path:  # fmt: skip
    """A JPEG grid: per condition, the source face, the face at each strength (no jitter, no pose change) and the
    truth region (the mask of ``truth.csv``) on the strongest; returns ``path``."""
    from PIL import Image

    from facediag.core.imageio import read_rgb
    from facediag.scoring.plots import figure_to_array, image_grid

    chosen = [f for f in faces if f.subject == subject]
    if not chosen:
        raise UserError(f"figure_subject={subject!r}: no such source person")
    face = chosen[0]
    original = face_crop(read_rgb(face.path), face.points)
    pictures, captions = [], []
    for condition in conditions:
        row = [original]
        captions.append("source photo")
        mask = None
        for strength in strengths:
            settings = Settings(strength=strength, conditions=tuple(c.name for c in conditions), jitter=0.0,
                                rotation=0.0, scale=0.0, shift=0.0)  # fmt: skip
            done = render(face, condition.name, conditions, table, settings, np.random.default_rng(0))
            row.append(face_crop(done.image, face.points))  # the source's framing: the change shows
            mask = face_crop(done.mask.astype(np.uint8) * 255, face.points) > 127
            captions.append(f"{strength:g} SD")
        row.append(outlined(row[-1], mask))
        captions.append("truth mask (3 SD)" if strengths[-1] == 3 else "truth mask")
        pictures += row
    labels = [f"{c.name}\n({c.measure_name or ' + '.join(c.parts)})" for c in conditions]
    grid = image_grid(pictures, captions, len(strengths) + 2, row_labels=labels, cell=(2.0, 2.05), caption_size=8,
                      dpi=80)  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(figure_to_array(grid)).save(path, format="JPEG", quality=82, optimize=True)
    return path
