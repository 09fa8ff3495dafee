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

:func:`face_anthropometry` is a second kind: a few standard clinical (Farkas-style) dysmorphology indices, jaw
line included, each a ratio of two distances or an angle in radians (:data:`ANTHROPOMETRY`).
"""

from __future__ import annotations

import numpy as np

from facediag.core.crop import DEFAULT_CROP
from facediag.preprocess.landmarks import IBUG_68_MIRROR

INNER = np.arange(17, 68)
DERIVED = ("mouth_width", "outer_lip_opening", "inner_lip_opening", "corner_lift", "corner_height",
           "eye_opening", "brow_height", "mouth_over_nose_width")
#: index of each point's mirror image (iBUG 68)
MIRROR = IBUG_68_MIRROR
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


#: the clinical indices of :func:`face_anthropometry`, in column order (iBUG points: en 39/42 inner and ex 36/45
#: outer canthi, n 27 nasion, sn 33 subnasale, ls 51 / li 57 upper / lower lip, sto stomion (mid 62, 66),
#: ch 48/54 mouth corners, al 31/35 alae, gn 8 menton, go 4/12 mandible angles, zy 0/16 face width at the ears)
ANTHROPOMETRY = (
    "canthal_index",                 # en-en / ex-ex: telecanthus
    "interpupillary_over_face",      # pupil-pupil / zy-zy: hypertelorism against the face's width
    "inner_canthal_over_face",       # en-en / zy-zy
    "fissure_length_over_face",      # palpebral fissure (en-ex, both eyes' mean) / zy-zy
    "fissure_slant",                 # palpebral fissure inclination above the eye line, radians (up-slant > 0)
    "palpebral_aperture",            # lid gap (upper to lower lid margin) / fissure length: eye opening
    "nasal_height_index",            # n-sn / n-gn: a short nose
    "nasal_width_over_inner_canthal",  # al-al / en-en
    "upper_face_index",              # n-sto / n-gn
    "lower_face_index",              # sn-gn / n-gn
    "philtrum_over_lower_face",      # sn-ls / sn-gn: a long philtrum
    "mandible_height_index",         # sto-gn / n-gn: a short lower jaw
    "mandible_width_index",          # go-go / zy-zy
    "chin_width_index",              # jaw points 6-10 / zy-zy: a narrow chin
    "chin_angle",                    # angle at gn between gn->go and gn->go, radians: a pointed chin
    "facial_index",                  # n-gn / zy-zy (Farkas' facial index, zy at the jaw line's top)
    "mouth_over_outer_canthal",      # ch-ch / ex-ex
    "mouth_over_inner_canthal",      # ch-ch / en-en
    "mouth_over_face",               # ch-ch / zy-zy: a wide mouth
    "vermilion_index",               # (ls-upper stomion + lower stomion-li) / ch-ch: lip fullness
)
#: dlib's 17 jaw points (0-16) in the ``dlib`` template's unit frame: their mean over the 102 London neutral photos
#: (dlib's 68-point detector, each face aligned to the template as the crops are); the alignment templates have no
#: jaw, so a face without landmarks gets this one beside the template's mean face
TEMPLATE_JAW = np.array([
    [-0.120, 0.264], [-0.106, 0.425], [-0.081, 0.581], [-0.054, 0.737], [-0.009, 0.886], [0.072, 1.013],
    [0.189, 1.114], [0.328, 1.185], [0.488, 1.208], [0.648, 1.188], [0.790, 1.119], [0.909, 1.021],
    [0.993, 0.896], [1.039, 0.746], [1.067, 0.589], [1.093, 0.432], [1.107, 0.270]])


def _angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle between the rows of two (N, 2) vectors, radians."""
    cos = (a * b).sum(axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return np.arccos(np.clip(cos, -1.0, 1.0))


def face_anthropometry(points: np.ndarray, template: str = DEFAULT_CROP.template) -> np.ndarray:
    """(N, len(:data:`ANTHROPOMETRY`)) float32 clinical indices of (N, 68, 2) landmarks in any frame (each a ratio
    of two distances or an angle: free of position, scale and in-plane rotation; both sides' mean where a measure
    has two, so a mirrored face reads the same). Rows with a missing point get the ``template``'s mean face with
    :data:`TEMPLATE_JAW`.

    The indices were picked as a dysmorphologist measures a face (Farkas' canthal, nasal, facial and mandible
    proportions, palpebral fissure length, slant and aperture, mouth width), not fitted to any data. The
    simulated conditions (:mod:`facediag.simulate`) are modelled on the same clinical descriptors, so on a
    simulated tree this source shows that the warped photos carry the change through dlib's detection and the
    alignment; it is no evidence that it would find a syndrome whose signs it was not built to measure.
    """
    from facediag.preprocess.align import template_landmarks

    points = np.array(points, dtype=np.float64).reshape(-1, 68, 2)
    missing = ~np.isfinite(points).all(axis=(1, 2))
    if missing.any():  # the measures are free of scale and position: the dlib frame serves every template
        reference = template_landmarks("dlib")
        reference[:17] = TEMPLATE_JAW
        points[missing] = reference
    left, right = points[:, 36:42].mean(axis=1), points[:, 42:48].mean(axis=1)
    eye_line = right - left
    inter_ocular = np.linalg.norm(eye_line, axis=1)
    if (inter_ocular <= 0).any():
        raise ValueError("face_anthropometry: landmarks with both eye centres on one point")
    # the face's own frame: x along the eye line, y down across it (image y grows downwards), inter-ocular units
    cos, sin = eye_line[:, 0] / inter_ocular, eye_line[:, 1] / inter_ocular
    rotation = np.stack([np.stack([cos, sin], axis=1), np.stack([-sin, cos], axis=1)], axis=1)  # (N, 2, 2)
    face = np.einsum("nij,nkj->nki", rotation, points - ((left + right) / 2)[:, None]) / inter_ocular[:, None, None]
    x, y = face[..., 0], face[..., 1]

    def d(a: int, b: int) -> np.ndarray:
        return _distance(face, a, b)

    stomion = face[:, [62, 66]].mean(axis=1)
    face_width, outer, inner = d(0, 16), d(36, 45), d(39, 42)
    fissure = (d(36, 39) + d(42, 45)) / 2
    height = y[:, 8] - y[:, 27]  # n-gn along the face's vertical
    lower = y[:, 8] - y[:, 33]
    slant = (np.arctan2(y[:, 39] - y[:, 36], x[:, 39] - x[:, 36])
             + np.arctan2(y[:, 42] - y[:, 45], x[:, 45] - x[:, 42])) / 2
    aperture = ((y[:, [41, 40]] - y[:, [37, 38]]).mean(axis=1) + (y[:, [47, 46]] - y[:, [43, 44]]).mean(axis=1)) / 2
    mouth = d(48, 54)
    indices = np.stack([
        inner / outer,
        1.0 / face_width,  # the pupil (eye-centre) distance is the unit
        inner / face_width,
        fissure / face_width,
        slant,
        aperture / fissure,
        (y[:, 33] - y[:, 27]) / height,
        d(31, 35) / inner,
        (stomion[:, 1] - y[:, 27]) / height,
        lower / height,
        (y[:, 51] - y[:, 33]) / lower,
        (y[:, 8] - stomion[:, 1]) / height,
        d(4, 12) / face_width,
        d(6, 10) / face_width,
        _angle(face[:, 4] - face[:, 8], face[:, 12] - face[:, 8]),
        height / face_width,
        mouth / outer,
        mouth / inner,
        mouth / face_width,
        (d(51, 62) + d(66, 57)) / mouth,
    ], axis=1)
    return indices.astype(np.float32)


#: fused-DTL2 source kinds computed from the aligned landmarks: ``{features: <kind>}`` in ``strategy.sources``
FEATURE_KINDS = {"face_geometry": face_geometry, "face_anthropometry": face_anthropometry}


def landmark_features(kind: str, points: np.ndarray, template: str = DEFAULT_CROP.template) -> np.ndarray:
    """The ``kind`` features (:data:`FEATURE_KINDS`) of (N, 68, 2) aligned landmarks."""
    if kind not in FEATURE_KINDS:
        raise ValueError(f"unknown landmark feature source {kind!r}; choose one of {sorted(FEATURE_KINDS)}")
    return FEATURE_KINDS[kind](points, template)
