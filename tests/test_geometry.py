"""Facial geometry features (facediag.models.geometry): aligned landmarks in inter-ocular units, mouth/eye measures."""

from __future__ import annotations

import numpy as np
import pytest

from facediag.models.geometry import DERIVED, INNER, MIRROR, N_FEATURES, face_geometry, landmark_features, mirrored
from facediag.preprocess.align import template_landmarks


def mean_face() -> np.ndarray:
    """dlib's mean face (points 17-67) with a jaw line, in 150 px crop coordinates: (1, 68, 2)."""
    points = template_landmarks("dlib")
    jaw = np.linspace(0, 1, 17)
    points[:17] = np.stack([jaw, 0.8 + 0.3 * np.sin(np.pi * jaw)], axis=1)
    return (points * 150)[None]


def derived(features: np.ndarray, name: str) -> np.ndarray:
    return features[:, 2 * len(INNER) + DERIVED.index(name)]


def test_geometry_does_not_depend_on_the_crop_position_or_scale():
    face = mean_face()
    features = face_geometry(face)
    assert features.shape == (1, N_FEATURES) and features.dtype == np.float32
    np.testing.assert_allclose(face_geometry(face * 2.5 + np.array([13.0, -7.0])), features, atol=1e-5)
    # eye centres at (-0.5, 0) and (0.5, 0): inter-ocular units, origin between the eyes
    points = features[0, : 2 * len(INNER)].reshape(-1, 2)
    eyes = points[36 - 17 : 48 - 17]
    np.testing.assert_allclose([eyes[:6].mean(axis=0), eyes[6:].mean(axis=0)], [[-0.5, 0.0], [0.5, 0.0]], atol=1e-5)


def test_raising_the_mouth_corners_raises_corner_lift_and_nothing_else_derived_but_corner_measures():
    face = mean_face()
    smiling = face.copy()
    smiling[0, [48, 54], 1] -= 6.0  # corners 6 px up, as in a smile
    before, after = face_geometry(face), face_geometry(smiling)
    assert derived(after, "corner_lift") > derived(before, "corner_lift") + 0.05
    assert derived(after, "corner_height") < derived(before, "corner_height")
    for name in ("inner_lip_opening", "eye_opening", "brow_height"):
        assert derived(after, name) == pytest.approx(derived(before, name))


def test_mirroring_swaps_left_and_right_points_and_is_its_own_inverse():
    assert sorted(MIRROR) == list(range(68)) and (MIRROR[MIRROR] == np.arange(68)).all()
    face = mean_face() + np.random.default_rng(0).normal(0, 1.0, (1, 68, 2))
    np.testing.assert_allclose(mirrored(mirrored(face)), face)
    # the left eye's outer corner (36) becomes the right eye's (45), x mirrored; symmetric measures stay
    np.testing.assert_allclose(mirrored(face)[0, 45], [-face[0, 36, 0], face[0, 36, 1]])
    before, after = face_geometry(face), face_geometry(mirrored(face))
    for name in ("mouth_width", "corner_lift", "eye_opening", "brow_height"):
        assert derived(after, name) == pytest.approx(derived(before, name), rel=1e-5)


def test_a_face_without_landmarks_gets_the_template_mean_face():
    face = mean_face()
    both = np.concatenate([face, np.full_like(face, np.nan)])
    features = face_geometry(both)
    assert np.isfinite(features).all()
    np.testing.assert_allclose(features[1], face_geometry(face)[0], atol=1e-5)  # same inner points as the template


def test_unknown_landmark_feature_kinds_are_refused():
    with pytest.raises(ValueError, match="unknown landmark feature source 'wrinkles'"):
        landmark_features("wrinkles", mean_face())
    with pytest.raises(ValueError, match="both eye centres on one point"):
        face_geometry(np.zeros((1, 68, 2)))
