"""Facial geometry features from the 68 iBUG landmarks (a fused-DTL2 source that is not a CNN).

The landmarks the preprocessing already found (and cached) are mapped into an aligned-face frame (the
similarity alignment of a crop), centred on the midpoint of the eye centres and divided by the inter-ocular
distance, so the features do not depend on the crop size or the photo's scale. Columns: the x, y of the
51 inner points (17-67: brows, nose, eyes, mouth; the jaw line is left out, its points are the least
reliable) and eight derived measures in inter-ocular units (:data:`DERIVED`): mouth width, outer and inner
lip opening, how far the mouth corners sit above the lip centre (a smile lifts them), corner height below
the eyes, eye opening (a Duchenne smile narrows the eyes), brow height and mouth width over nose width.

A face without landmarks (the preprocessing's centre-crop fallback) gets the geometry of the alignment
template's mean face: no evidence either way. Cost: no multiply-accumulates worth counting.
"""

from __future__ import annotations

import numpy as np

from facediag.core.crop import DEFAULT_CROP

INNER = np.arange(17, 68)
DERIVED = ("mouth_width", "outer_lip_opening", "inner_lip_opening", "corner_lift", "corner_height",
           "eye_opening", "brow_height", "mouth_over_nose_width")
#: index of each point's mirror image (iBUG 68): jaw, brows, nose, eyes, outer and inner lips.
MIRROR = np.array([*range(16, -1, -1), *range(26, 16, -1), 27, 28, 29, 30, *range(35, 30, -1),
                   45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40, *range(54, 47, -1), *range(59, 54, -1),
                   *range(64, 59, -1), 67, 66, 65])
N_FEATURES = 2 * len(INNER) + len(DERIVED)


def mirrored(points: np.ndarray) -> np.ndarray:
    """(N, 68, 2) landmarks of the horizontally mirrored faces (x negated, left and right points swapped)."""
    flipped = np.asarray(points, dtype=np.float64)[:, MIRROR].copy()
    flipped[..., 0] *= -1
    return flipped


def _distance(points: np.ndarray, a: int, b: int) -> np.ndarray:
    return np.linalg.norm(points[:, a] - points[:, b], axis=1)


def face_geometry(points: np.ndarray, template: str = DEFAULT_CROP.template) -> np.ndarray:
    """(N, :data:`N_FEATURES`) float32 geometry of (N, 68, 2) aligned landmarks (any frame related to the
    crop's by a translation and a scale); rows with missing points get the ``template``'s mean face."""
    from facediag.preprocess.align import template_landmarks

    points = np.array(points, dtype=np.float64).reshape(-1, 68, 2)
    missing = ~np.isfinite(points[:, INNER]).all(axis=(1, 2))
    if missing.any():
        points[missing] = template_landmarks(template)
    left, right = points[:, 36:42].mean(axis=1), points[:, 42:48].mean(axis=1)
    inter_ocular = np.linalg.norm(right - left, axis=1)
    if (inter_ocular <= 0).any():
        raise ValueError("face_geometry: landmarks with both eye centres on one point")
    unit = (points - ((left + right) / 2)[:, None]) / inter_ocular[:, None, None]
    y = unit[..., 1]
    derived = np.stack([
        _distance(unit, 48, 54),
        _distance(unit, 51, 57),
        _distance(unit, 62, 66),
        y[:, [51, 57]].mean(axis=1) - y[:, [48, 54]].mean(axis=1),
        y[:, [48, 54]].mean(axis=1),
        (_distance(unit, 37, 41) + _distance(unit, 38, 40) + _distance(unit, 43, 47) + _distance(unit, 44, 46)) / 4,
        y[:, 17:27].mean(axis=1),
        _distance(unit, 48, 54) / np.maximum(_distance(unit, 31, 35), 1e-6),
    ], axis=1)
    return np.hstack([unit[:, INNER].reshape(len(unit), -1), derived]).astype(np.float32)


#: fused-DTL2 source kinds computed from the aligned landmarks: ``{features: <kind>}`` in ``strategy.sources``
FEATURE_KINDS = {"face_geometry": face_geometry}


def landmark_features(kind: str, points: np.ndarray, template: str = DEFAULT_CROP.template) -> np.ndarray:
    """The ``kind`` features (:data:`FEATURE_KINDS`) of (N, 68, 2) aligned landmarks."""
    if kind not in FEATURE_KINDS:
        raise ValueError(f"unknown landmark feature source {kind!r}; choose one of {sorted(FEATURE_KINDS)}")
    return FEATURE_KINDS[kind](points, template)
