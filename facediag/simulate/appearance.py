"""Appearance changes: a colour shift inside a soft face ellipse (eyes to chin; its top reaches just above the
brows, outside the 68-landmark hull that the audit's face-blind check hides: docs/simulate.md)."""

from __future__ import annotations

import numpy as np

from facediag.simulate.anatomy import FaceFrame, named_points
from facediag.simulate.warp import upsample

#: the skin region: an ellipse in face-frame units (centre, semi-axes; IPD units), feathered by ``FEATHER``
SKIN_CENTRE, SKIN_AXES, FEATHER = (0.0, 0.75), (0.85, 1.05), 0.12


def skin_weight(shape: tuple[int, ...], points: np.ndarray, step: int = 4) -> np.ndarray:
    """(H, W) float32 weight in [0, 1]: 1 well inside the face ellipse (eyes to chin, cheek to cheek), 0 outside,
    a smooth ramp ``FEATHER`` (ellipse-radius units) wide at its edge; computed every ``step`` px and resized."""
    frame = FaceFrame.of(named_points(points))
    height, width = shape[:2]
    ys, xs = np.mgrid[0 : height + step : step, 0 : width + step : step].astype(np.float32)
    local = frame.to_frame(np.stack([xs.ravel(), ys.ravel()], axis=1))
    radius = np.sqrt((((local - SKIN_CENTRE) / SKIN_AXES) ** 2).sum(axis=1))
    weight = np.clip((1.0 - radius) / FEATHER, 0.0, 1.0).reshape(xs.shape).astype(np.float32)
    weight = weight * weight * (3 - 2 * weight)  # smoothstep
    return upsample(weight, step, height, width)


def _lab(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.asarray(image, dtype=np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def skin_yellowness(image: np.ndarray, points: np.ndarray) -> float:
    """Mean CIELAB b* (yellow-blue axis) of the face region, weighted by :func:`skin_weight`."""
    weight = skin_weight(image.shape, points)
    return float((_lab(image)[..., 2] * weight).sum() / weight.sum())


def shift_yellowness(image: np.ndarray, weight: np.ndarray, delta: float) -> np.ndarray:
    """uint8 RGB with CIELAB b* raised in proportion to ``weight`` so that its ``weight``-weighted mean (the
    measure of :func:`skin_yellowness`) rises by ``delta``; lightness and a* kept. Every image takes this round
    trip (delta 0 included), so all classes share its rounding."""
    import cv2

    lab = _lab(image)
    lab[..., 2] += np.float32(delta * weight.sum() / max(float((weight * weight).sum()), 1e-9)) * weight
    rgb = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
