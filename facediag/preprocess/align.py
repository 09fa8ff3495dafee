"""Alignment math: least-squares similarity transforms, canonical face templates, and the crop warp.

Pure functions over numpy arrays. Matrices are (2, 3) affine maps ``[A | t]`` applied to (x, y)
pixel coordinates; an "alignment matrix" maps the original image onto the crop.

Templates live in a unit square (x right, y down), the way dlib's ``get_face_chip_details``
defines its mean face; a crop of ``size`` pixels with ``padding`` p places template point q at
``(q + p) / (1 + 2 p) * size``.

- ``"dlib"``: dlib's mean face (``dlib/image_transforms/interpolation.h``, ``get_face_chip_details``,
  68-point branch): landmarks 27-54 and 60-64 (nose, eyes, outer mouth, upper inner lip; eyebrows,
  jaw and lower lip are ignored). With ``size=150, padding=0.25`` and ``warp`` this reproduces
  ``dlib.get_face_chip(img, shape, 150, 0.25)``, the input of dlib's face-recognition ResNet.
- ``"vggface2"``: the same mean face re-framed loosely, for the 224-pixel ImageNet/VGGFace2 nets.
  The unit square becomes a detector-like face box from just above the brows to the chin (see
  ``VGGFACE2_FRAME``), so ``padding=0.3`` gives the VGGFace2 training crop ("box extended by 30%"),
  and ``padding=0.2`` matches that crop after its 256→224 centre crop: (1 + 2*0.3) * 224/256 = 1 + 2*0.2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from facediag.core.crop import DEFAULT_CROP

N_LANDMARKS = 68

# dlib's mean face shape for landmarks 17..67 (x then y), copied from get_face_chip_details.
# fmt: off
_DLIB_MEAN_X_17_67 = (
    0.000213256, 0.0752622, 0.18113, 0.29077, 0.393397, 0.586856, 0.689483, 0.799124,
    0.904991, 0.98004, 0.490127, 0.490127, 0.490127, 0.490127, 0.36688, 0.426036,
    0.490127, 0.554217, 0.613373, 0.121737, 0.187122, 0.265825, 0.334606, 0.260918,
    0.182743, 0.645647, 0.714428, 0.793132, 0.858516, 0.79751, 0.719335, 0.254149,
    0.340985, 0.428858, 0.490127, 0.551395, 0.639268, 0.726104, 0.642159, 0.556721,
    0.490127, 0.423532, 0.338094, 0.290379, 0.428096, 0.490127, 0.552157, 0.689874,
    0.553364, 0.490127, 0.42689,
)
_DLIB_MEAN_Y_17_67 = (
    0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891,
    0.0187482, 0.038915, 0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326,
    0.609345, 0.628106, 0.609345, 0.587326, 0.216423, 0.178758, 0.179852, 0.231733,
    0.245099, 0.244077, 0.231733, 0.179852, 0.178758, 0.216423, 0.244077, 0.245099,
    0.780233, 0.745405, 0.727388, 0.742578, 0.727388, 0.745405, 0.780233, 0.864805,
    0.902192, 0.909281, 0.902192, 0.864805, 0.784792, 0.778746, 0.785343, 0.778746,
    0.784792, 0.824182, 0.831803, 0.824182,
)
# fmt: on

#: dlib's mean face as (68, 2); jaw points 0-16 are not part of it (NaN).
DLIB_MEAN_FACE = np.full((N_LANDMARKS, 2), np.nan)
DLIB_MEAN_FACE[17:, 0] = _DLIB_MEAN_X_17_67
DLIB_MEAN_FACE[17:, 1] = _DLIB_MEAN_Y_17_67

#: Landmarks dlib fits its chip to: 17-67 without eyebrows (17-26), lower lip (55-59, 65-67).
DLIB_FIT_INDICES = np.array([i for i in range(17, 68) if not (17 <= i <= 26 or 55 <= i <= 59 or 65 <= i)])

#: Face box in dlib's unit frame, as (left, top, side): a square like a face detector's box, from
#: just above the brows to the chin. Measured once on 68 dlib-aligned London faces: the chin
#: (landmark 8) lies at y=1.22, the jaw spans x=-0.12..1.11, the brows top out at y=0.01.
VGGFACE2_FRAME = (-0.185, -0.14, 1.35)

FIVE_POINT_NAMES = ("left_eye", "right_eye", "nose_tip", "mouth_left", "mouth_right")
TEMPLATES = ("dlib", "vggface2")
#: iBUG 68-point indices of the outer and inner lips (the default region of `region_mask`)
MOUTH = tuple(range(48, 68))


def five_points(landmarks68: np.ndarray) -> np.ndarray:
    """Five (x, y) points from 68 iBUG landmarks: eye centres, nose tip, mouth corners.

    "left"/"right" are as seen in the image: the left eye is landmarks 36-41, the right 42-47,
    the nose tip 30, the mouth corners 48 and 54.
    """
    points = np.asarray(landmarks68, dtype=np.float64)
    if points.shape != (N_LANDMARKS, 2):
        raise ValueError(f"expected (68, 2) landmarks, got {points.shape}")
    return np.stack([points[36:42].mean(axis=0), points[42:48].mean(axis=0), points[30], points[48], points[54]])


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> np.ndarray:
    """Least-squares similarity (or rigid, ``with_scale=False``) transform mapping ``src`` onto ``dst``.

    Umeyama (1991), "Least-squares estimation of transformation parameters between two point
    patterns". Returns the (2, 3) matrix M minimising sum ||M [src; 1] - dst||^2 over rotations
    (no reflections), uniform scales and translations.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need two matching (N>=2, 2) point sets, got {src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    covariance = dst_c.T @ src_c / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1.0
    rotation = u @ sign @ vt
    scale = 1.0
    if with_scale:
        src_var = (src_c**2).sum() / len(src)
        if src_var == 0:
            raise ValueError("source points are all identical; the scale is undefined")
        scale = float((singular * np.diag(sign)).sum() / src_var)
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine matrix to (N, 2) points."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine matrix."""
    linear_inv = np.linalg.inv(matrix[:, :2])
    return np.hstack([linear_inv, -(linear_inv @ matrix[:, 2])[:, None]])


def template_landmarks(template: str) -> np.ndarray:
    """The template's (68, 2) mean face in its unit square (NaN where a point is not used)."""
    if template == "dlib":
        return DLIB_MEAN_FACE.copy()
    if template == "vggface2":
        left, top, side = VGGFACE2_FRAME
        return (DLIB_MEAN_FACE - np.array([left, top])) / side
    raise ValueError(f"unknown template {template!r}; choose one of {TEMPLATES}")


def template_points(template: str, size: int, padding: float, points: int = 68) -> tuple[np.ndarray, np.ndarray]:
    """Template targets in crop pixels for ``points`` = 68 (dlib's fit subset) or 5 (``five_points``).

    Returns ``(indices, targets)``: for 68, the landmark indices used and their (K, 2) targets; for
    5, ``indices`` is ``arange(5)`` into ``five_points(landmarks)``.
    """
    if padding < 0 or size <= 0:
        raise ValueError(f"need size > 0 and padding >= 0, got size={size}, padding={padding}")
    unit = template_landmarks(template)
    if points == 68:
        indices, unit_points = DLIB_FIT_INDICES, unit[DLIB_FIT_INDICES]
    elif points == 5:
        filled = np.where(np.isnan(unit), 0.0, unit)
        indices, unit_points = np.arange(5), five_points(filled)
    else:
        raise ValueError(f"points must be 68 or 5, got {points}")
    return indices, (padding + unit_points) / (2 * padding + 1) * size


def alignment_matrix(
    landmarks: np.ndarray,
    size: int,
    template: str = DEFAULT_CROP.template,
    padding: float = DEFAULT_CROP.padding,
    points: int = 68,
) -> np.ndarray:
    """(2, 3) similarity mapping the image onto a ``size``-pixel crop with the face on ``template``.

    Fitted as dlib does: least squares from template to image points, then inverted (least
    squares is not symmetric in the scale, and this is the direction dlib fits).
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (N_LANDMARKS, 2) or not np.isfinite(landmarks).all():
        raise ValueError(f"expected finite (68, 2) landmarks, got shape {landmarks.shape}")
    indices, targets = template_points(template, size, padding, points)
    sources = landmarks[indices] if points == 68 else five_points(landmarks)
    return invert_affine(umeyama(targets, sources))


def resize_matrix(width: int, height: int, size: int) -> np.ndarray:
    """(2, 3) matrix of ``center_square_resize``: the central square of the image onto ``size`` pixels."""
    side = min(width, height)
    scale = size / side
    left, top = (width - side) // 2, (height - side) // 2
    # pixel centres: crop (u + 0.5) = scale * (x - left + 0.5)
    return np.array([[scale, 0.0, (0.5 - left) * scale - 0.5], [0.0, scale, (0.5 - top) * scale - 0.5]])


def center_square_resize(image: np.ndarray, size: int) -> np.ndarray:
    """The central square of ``image`` resized to ``size`` x ``size`` (area interpolation when shrinking).

    For whole-image crops (already aligned images, the centre-crop fallback): unlike ``warp``, whose
    dlib geometry loses a pixel or two at the image border, this keeps every edge pixel.
    """
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top : top + side, left : left + side]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(square, (size, size), interpolation=interpolation))


# ---------------------------------------------------------------------------------------------
# Warp: dlib's extract_image_chip geometry (chip rectangle, Gaussian pyramid, bilinear sampling).


def _pyramid_down(image: np.ndarray) -> np.ndarray:
    """dlib ``pyramid_down<2>``: 5-tap [1 4 6 4 1] filter, keep every other pixel, integer /256.

    Output pixel (r, c) is the filter centred on input (2r + 2, 2c + 2). The float32 filter is exact
    (integer sums below 2**24), so the result equals dlib's integer arithmetic bit for bit.
    """
    height, width = image.shape[:2]
    if height <= 8 or width <= 8:
        return np.zeros((0, 0, image.shape[2]), dtype=np.uint8)
    out_h, out_w = (height - 3) // 2, (width - 3) // 2
    kernel = np.array([1, 4, 6, 4, 1], dtype=np.float32)
    filtered = cv2.sepFilter2D(image, cv2.CV_32F, kernel, kernel, borderType=cv2.BORDER_REPLICATE)
    centres = filtered[2 : 2 + 2 * out_h : 2, 2 : 2 + 2 * out_w : 2]
    return (centres * (1.0 / 256)).astype(np.uint8)  # exact scaling, truncation = integer division


def _rect_down(rect: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    left, top, right, bottom = rect
    return (left / 2 - 1.25, top / 2 - 0.75, right / 2 - 1.25, bottom / 2 - 0.75)


def _rect_area(rect: tuple[float, float, float, float]) -> float:
    left, top, right, bottom = rect
    if left > right or top > bottom:
        return 0.0
    return (right - left + 1) * (bottom - top + 1)


def _rotate(center: np.ndarray, point: np.ndarray, angle: float) -> np.ndarray:
    cos, sin = math.cos(angle), math.sin(angle)
    offset = point - center
    return center + np.array([cos * offset[0] - sin * offset[1], sin * offset[0] + cos * offset[1]])


def _affine_from_3(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    homogeneous = np.hstack([src, np.ones((3, 1))])
    return np.linalg.solve(homogeneous, dst).T


def _chip_geometry(matrix: np.ndarray, size: int) -> tuple[tuple[float, float, float, float], float]:
    """dlib ``chip_details``: the rotated rectangle in the image that becomes the chip."""
    chip_to_image = invert_affine(np.asarray(matrix, dtype=np.float64))
    column = chip_to_image[:, 0]
    angle = math.atan2(column[1], column[0])
    scale = math.hypot(column[0], column[1])
    cx, cy = transform_points(np.array([[size / 2.0, size / 2.0]]), chip_to_image)[0]
    half = (size * scale - 1) / 2  # dlib centered_drect shrinks width and height by one
    return (cx - half, cy - half, cx + half, cy + half), angle


def _corners_to_image(rect: tuple[float, float, float, float], angle: float, size: int) -> np.ndarray:
    """Affine map from chip pixels to ``rect``'s coordinates (dlib maps chip corners to rect corners)."""
    left, top, right, bottom = rect
    center = np.array([(left + right) / 2, (top + bottom) / 2])
    image_corners = np.stack(
        [_rotate(center, np.array(corner), angle) for corner in ((left, top), (right, top), (left, bottom))]
    )
    chip_corners = np.array([[0.0, 0.0], [size - 1.0, 0.0], [0.0, size - 1.0]])
    return _affine_from_3(chip_corners, image_corners)


def chip_matrix(matrix: np.ndarray, size: int) -> np.ndarray:
    """The image→crop affine that ``warp(image, matrix, size)`` actually applies.

    dlib spans the chip's corner pixels over a rectangle one pixel narrower than ``size * scale``,
    so the effective map differs from ``matrix`` by a fraction of a pixel; draw landmarks with this one.
    """
    rect, angle = _chip_geometry(matrix, size)
    return invert_affine(_corners_to_image(rect, angle, size))


def _bilinear(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """dlib ``interpolate_bilinear``: black outside, where the 2x2 neighbourhood leaves the image."""
    height, width = image.shape[:2]
    x, y = xy[..., 0].ravel(), xy[..., 1].ravel()
    left, top = np.floor(x), np.floor(y)
    fx, fy = (x - left)[:, None], (y - top)[:, None]
    left, top = left.astype(np.intp), top.astype(np.intp)
    inside = (left >= 0) & (top >= 0) & (left + 1 < width) & (top + 1 < height)
    index = np.where(inside, top * width + left, 0)
    flat = image.reshape(-1, image.shape[2])

    def gather(offset: int) -> np.ndarray:
        return np.take(flat, index + offset, axis=0)

    top_row = (1 - fx) * gather(0) + fx * gather(1)
    bottom_row = (1 - fx) * gather(width) + fx * gather(width + 1)
    out = ((1 - fy) * top_row + fy * bottom_row).astype(np.uint8)  # dlib truncates double -> uint8
    out[~inside] = 0
    return out.reshape(xy.shape[:-1] + (image.shape[2],))


def warp(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Crop ``size`` x ``size`` RGB pixels from ``image`` through the image→crop similarity ``matrix``.

    Follows dlib's ``extract_image_chip``: when the face is much larger than the crop, the source
    is first reduced with dlib's Gaussian pyramid (no aliasing), then sampled bilinearly; pixels
    mapping outside the image are black. Same output as ``dlib.get_face_chip`` for the same fit.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    rect, angle = _chip_geometry(matrix, size)
    chip_area = float(size * size)

    # Pyramid depth and the margin it needs, as in extract_image_chips.
    depth, grow, probe = 0, 2.0, _rect_down(rect)
    while _rect_area(probe) > chip_area:
        probe = _rect_down(probe)
        depth += 1
        grow = grow * 2 + 2
    left, top, right, bottom = rect
    center = np.array([(left + right) / 2, (top + bottom) / 2])
    corners = np.stack(
        [_rotate(center, np.array(c), angle) for c in ((left, top), (right, top), (left, bottom), (right, bottom))]
    )
    box = (
        max(corners[:, 0].min() - grow, 0.0),
        max(corners[:, 1].min() - grow, 0.0),
        min(corners[:, 0].max() + grow, width - 1.0),
        min(corners[:, 1].max() + grow, height - 1.0),
    )
    box_l, box_t, box_r, box_b = (math.floor(v + 0.5) for v in box)
    if box_l > box_r or box_t > box_b:
        return np.zeros((size, size, 3), dtype=np.uint8)
    source = image[box_t : box_b + 1, box_l : box_r + 1]

    local = (left - box_l, top - box_t, right - box_l, bottom - box_t)
    for _ in range(depth):
        if _rect_area(_rect_down(local)) <= chip_area:
            break
        local = _rect_down(local)
        source = _pyramid_down(source)
    if source.size == 0:
        return np.zeros((size, size, 3), dtype=np.uint8)

    chip_to_source = _corners_to_image(local, angle, size)
    grid_y, grid_x = np.mgrid[0:size, 0:size].astype(np.float64)
    xy = np.stack([grid_x, grid_y], axis=-1) @ chip_to_source[:, :2].T + chip_to_source[:, 2]
    return _bilinear(source, xy)


def region_mask(landmarks: np.ndarray, size: int, indices: Sequence[int] = MOUTH, dilate: float = 0.1) -> np.ndarray:
    """Boolean (size, size) mask: the convex hull of ``landmarks[indices]`` grown by ``dilate`` × its width."""
    points = landmarks[list(indices)]
    mask = np.zeros((size, size), np.uint8)
    if not np.isfinite(points).all():
        return mask.astype(bool)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(points).astype(np.int32)), 1)
    radius = max(1, round(dilate * float(np.ptp(points[:, 0]))))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask, kernel).astype(bool)
