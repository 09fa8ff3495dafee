"""dlib's 68 landmarks averaged over perturbed starts: test-time augmentation of the shape predictor.

dlib's shape predictor (an ensemble of regression trees, Kazemi & Sullivan 2014) starts from its mean shape placed
in the face box and refines it by a fixed cascade, so where its points land depends a little on the box. The averaged
landmarker runs it from :data:`STARTS` boxes - the detector's own, shifted by ±:data:`SHIFT` of its width or height
and scaled by 1 ± :data:`SCALE` (seven, fixed in advance, no random draw) - on the photo and on its mirror image (the
points found there mapped back and renumbered with the iBUG 68 left/right permutation,
:data:`facediag.preprocess.landmarks.IBUG_68_MIRROR`): 14 passes of ≈ 1 ms, averaged point by point. The set of
starts is symmetric left-right, so the result is deterministic and mirror-equivariant: a mirrored photo gives the
mirrored points. ``Preprocessor.faces(..., landmarker="dlib_averaged")`` reads these in place of the preprocessing's own
single pass, each photo's computed once and kept in the preprocessing's cache (by photo digest).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from facediag.preprocess.cache import config_hash
from facediag.preprocess.landmarks import IBUG_68_MIRROR, SHAPE_PREDICTOR_68, DlibLandmarker

SHIFT = 0.05
SCALE = 0.05
#: (x shift, y shift, scale) of each start: shifts in box widths / heights, the box scaled about its centre
STARTS = ((0.0, 0.0, 1.0), (-SHIFT, 0.0, 1.0), (SHIFT, 0.0, 1.0), (0.0, -SHIFT, 1.0), (0.0, SHIFT, 1.0),
          (0.0, 0.0, 1.0 - SCALE), (0.0, 0.0, 1.0 + SCALE))

Box = tuple[float, float, float, float]


def started(box: Box, shift_x: float, shift_y: float, scale: float) -> Box:
    """``box`` (x0, y0, x1, y1) moved by ``shift_x`` of its width and ``shift_y`` of its height, scaled by ``scale``
    about its centre."""
    x0, y0, x1, y1 = box
    width, height = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2 + shift_x * width, (y0 + y1) / 2 + shift_y * height
    half_w, half_h = scale * width / 2, scale * height / 2
    return cx - half_w, cy - half_h, cx + half_w, cy + half_h


def mirror_box(box: Box, width: int) -> Box:
    """``box`` in the horizontally mirrored photo ``width`` pixels wide."""
    x0, y0, x1, y1 = box
    return width - x1, y0, width - x0, y1


def mirror_points(points: np.ndarray, width: int) -> np.ndarray:
    """(68, 2) landmarks found in the mirrored photo ``width`` pixels wide, in the photo's pixels and point order
    (pixel column j of one is column ``width - 1 - j`` of the other; left and right points swapped)."""
    back = np.array(points, dtype=np.float64)[IBUG_68_MIRROR]
    back[:, 0] = width - 1 - back[:, 0]
    return back


class AveragedDlibLandmarker(DlibLandmarker):
    """``landmarks(image, box) -> float32 (68, 2)``: the mean of dlib's 68 points over :data:`STARTS` on the photo
    and on its mirror image (``mirror=False``: the photo only). Usable as a preprocessing's landmarker too."""

    def __init__(self, model_file: str = SHAPE_PREDICTOR_68, mirror: bool = True):
        super().__init__(model_file)
        self.mirror = mirror

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        once, width = super().landmarks, image.shape[1]
        found = [once(image, started(box, *start)) for start in STARTS]
        if self.mirror:
            flipped = np.ascontiguousarray(image[:, ::-1])
            found += [mirror_points(once(flipped, mirror_box(started(box, *start), width)), width) for start in STARTS]
        return np.mean(found, axis=0).astype(np.float32)

    @property
    def passes(self) -> int:
        return len(STARTS) * (2 if self.mirror else 1)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "name": "dlib_shape_predictor_averaged", "starts": [list(s) for s in STARTS],
                "mirror": self.mirror}


def averaged_landmarks(preprocessor: Any, results: Sequence[Any],
                       landmarker: AveragedDlibLandmarker | None = None) -> np.ndarray:
    """(N, 68, 2) float32 image-pixel landmarks of ``results`` from the averaged landmarker, started from each
    result's face box; NaN where the preprocessing found no landmarks. Each photo's are kept in the preprocessing's
    cache (by photo digest)."""
    landmarker = landmarker or AveragedDlibLandmarker()
    return preprocessor.photo_points(results, f"dlib_averaged-{config_hash(landmarker.describe())[:8]}",
                                     lambda photo, r: landmarker.landmarks(photo, r.box))
