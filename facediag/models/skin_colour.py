"""Skin colour of the aligned face: CIELAB statistics of its skin, a fused-DTL2 source read from the crop (not a CNN).

Face-recognition embeddings are trained to ignore illumination and colour, and the landmark sources see only
geometry; a pallor, a jaundice or a flush shows in neither. :func:`skin_colour` reads it from the pixels the
pipeline sees: the aligned crop (after the preprocessing's harmonisation) and the landmarks in its pixels. The skin
region (:func:`skin_region`) is the hull of the 68 landmarks drawn in a little from the face's outline (jaw line and
brows, where skin meets hair or background), without the brows, the eyes and the lips (each grown by
:data:`GROWN` of its width). Columns (:data:`SKIN_COLOUR`): the mean and the median of CIELAB L* (lightness), a*
(green-red) and b* (blue-yellow) over that region, in OpenCV's float CIELAB (L* 0-100, a* and b* about -128-127).

A face without landmarks (the preprocessing's centre-crop fallback) is read inside the alignment template's mean face
(brows to lips, no jaw). A mirrored face reads the same (the statistics of a set of pixels do not depend on its
order). Cost: one colour conversion of a crop per image; nothing cached but the crops and landmarks themselves.
"""

from __future__ import annotations

import numpy as np

from facediag.core.crop import DEFAULT_CROP, CropSpec

#: the source kind's name in ``strategy.sources`` (``{features: skin_colour}``) and its columns, in order
KIND = "skin_colour"
SKIN_COLOUR = ("L_mean", "a_mean", "b_mean", "L_median", "a_median", "b_median")
#: iBUG 68 points of what is not skin: each brow, each eye, the lips (outer contour)
NOT_SKIN = (range(17, 22), range(22, 27), range(36, 42), range(42, 48), range(48, 60))
#: how far each part left out is grown (× the width of its points), and how far the outline is drawn in (× its size)
GROWN, DRAWN_IN = 0.2, 0.06


def skin_region(points: np.ndarray, size: int) -> np.ndarray:
    """(size, size) bool skin of a face whose (68, 2) landmarks in crop pixels are all finite: the landmarks' hull
    drawn in by :data:`DRAWN_IN` towards its centre, without :data:`NOT_SKIN` (each grown by :data:`GROWN`). Rows of
    ``points`` that are NaN (a template without jaw) are left out of the hull."""
    from facediag.preprocess.align import region_mask

    points = np.asarray(points, dtype=np.float64)
    outline = [i for i in range(len(points)) if np.isfinite(points[i]).all()]
    centre = points[outline].mean(axis=0)
    drawn_in = centre + (1 - DRAWN_IN) * (points - centre)
    skin = region_mask(drawn_in, size, indices=outline, dilate=0.0)
    for part in NOT_SKIN:
        skin &= ~region_mask(points, size, indices=part, dilate=GROWN)
    return skin


def _template_points(crop: CropSpec) -> np.ndarray:
    """The ``crop`` template's mean face (NaN jaw) in its pixels: where a face without landmarks is read."""
    from facediag.preprocess.align import template_landmarks

    return (crop.padding + template_landmarks(crop.template)) / (2 * crop.padding + 1) * crop.size


def skin_colour(crops: np.ndarray, points: np.ndarray, crop: CropSpec = DEFAULT_CROP) -> np.ndarray:
    """(N, len(:data:`SKIN_COLOUR`)) float32 CIELAB mean and median of each uint8 RGB crop's :func:`skin_region`
    (``points``: (N, 68, 2) landmarks in crop pixels; a row with a NaN point is read in ``crop``'s template face)."""
    import cv2

    crops = np.asarray(crops)
    points = np.asarray(points, dtype=np.float64).reshape(-1, 68, 2)
    if crops.ndim != 4 or crops.shape[-1] != 3 or len(crops) != len(points):
        raise ValueError(f"skin_colour: need (N, H, W, 3) crops and (N, 68, 2) points, got {crops.shape} and "
                         f"{points.shape}")
    rows = []
    for image, face in zip(crops, points, strict=True):
        if not np.isfinite(face).all():
            face = _template_points(crop)
        skin = skin_region(face, image.shape[0])
        if not skin.any():  # landmarks outside the crop: read the template's face instead
            skin = skin_region(_template_points(crop), image.shape[0])
        lab = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)[skin]
        rows.append(np.concatenate([lab.mean(axis=0), np.median(lab, axis=0)]))
    return np.asarray(rows, dtype=np.float32).reshape(len(crops), len(SKIN_COLOUR))
