"""Clinical anthropometry indices (facediag.models.geometry.face_anthropometry) of synthetic 68-point faces."""

from __future__ import annotations

import numpy as np
import pytest

from facediag.models.geometry import (
    ANTHROPOMETRY,
    FEATURE_KINDS,
    TEMPLATE_JAW,
    face_anthropometry,
    landmark_features,
    mirrored,
)
from facediag.preprocess.align import template_landmarks

EYES = {"left": np.arange(36, 42), "right": np.arange(42, 48)}


def mean_face() -> np.ndarray:
    """dlib's mean face with the London mean jaw, in 150 px crop coordinates: (1, 68, 2)."""
    points = template_landmarks("dlib")
    points[:17] = TEMPLATE_JAW
    return (points * 150)[None]


def index(features: np.ndarray, name: str) -> float:
    return float(features[0, ANTHROPOMETRY.index(name)])


def rotated(face: np.ndarray, degrees: float) -> np.ndarray:
    angle = np.deg2rad(degrees)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return face @ rotation.T


def test_indices_do_not_depend_on_position_scale_or_in_plane_rotation():
    face = mean_face()
    features = face_anthropometry(face)
    assert features.shape == (1, len(ANTHROPOMETRY)) and features.dtype == np.float32
    assert np.isfinite(features).all()
    np.testing.assert_allclose(face_anthropometry(face * 0.4 + np.array([-30.0, 55.0])), features, atol=1e-5)
    np.testing.assert_allclose(face_anthropometry(rotated(face, 12.0)), features, atol=1e-5)


def test_moving_the_eyes_apart_raises_the_eye_spacing_indices_and_leaves_the_lower_face_alone():
    face = mean_face()
    apart = face.copy()
    apart[0, EYES["left"], 0] -= 4.0
    apart[0, EYES["right"], 0] += 4.0
    before, after = face_anthropometry(face), face_anthropometry(apart)
    for name in ("canthal_index", "interpupillary_over_face", "inner_canthal_over_face"):
        assert index(after, name) > index(before, name) + 0.02, name
    assert index(after, "mouth_over_inner_canthal") < index(before, "mouth_over_inner_canthal")
    for name in ("fissure_slant", "palpebral_aperture", "mandible_height_index", "philtrum_over_lower_face"):
        assert index(after, name) == pytest.approx(index(before, name), abs=1e-5), name


def test_raising_the_outer_eye_corners_reads_as_an_up_slant_in_radians():
    face = mean_face()
    slanted = face.copy()
    slanted[0, [36, 45], 1] -= 5.0  # outer canthi 5 px up (image y grows downwards)
    before, after = face_anthropometry(face), face_anthropometry(slanted)
    fissure = np.linalg.norm(face[0, 39] - face[0, 36])
    expected = np.arctan2(face[0, 39, 1] - face[0, 36, 1] + 5.0, face[0, 39, 0] - face[0, 36, 0])
    assert index(after, "fissure_slant") == pytest.approx(float(expected), abs=0.02)  # eye line moves a little too
    assert index(after, "fissure_slant") - index(before, "fissure_slant") > 0.5 * 5.0 / fissure


def test_a_shorter_chin_lowers_the_mandible_height_index_and_a_wider_mouth_raises_mouth_width():
    face = mean_face()
    short_jaw = face.copy()
    short_jaw[0, 5:12, 1] -= 8.0  # chin and lower jaw line 8 px up
    wide = face.copy()
    wide[0, 48, 0] -= 5.0
    wide[0, 54, 0] += 5.0
    before = face_anthropometry(face)
    assert index(face_anthropometry(short_jaw), "mandible_height_index") < index(before, "mandible_height_index") - 0.02
    assert index(face_anthropometry(short_jaw), "lower_face_index") < index(before, "lower_face_index")
    for name in ("mouth_over_outer_canthal", "mouth_over_inner_canthal", "mouth_over_face"):
        assert index(face_anthropometry(wide), name) > index(before, name) + 0.02, name


def test_a_mirrored_face_has_the_same_indices():
    face = mean_face() + np.random.default_rng(1).normal(0, 1.5, (1, 68, 2))
    np.testing.assert_allclose(face_anthropometry(mirrored(face)), face_anthropometry(face), rtol=1e-5, atol=1e-6)


def test_a_face_with_a_missing_point_gets_the_template_face_with_the_mean_jaw():
    face = mean_face() + np.random.default_rng(2).normal(0, 1.5, (1, 68, 2))
    no_jaw = face.copy()
    no_jaw[0, 8] = np.nan  # the jaw alone missing is missing too: the template has no jaw of its own
    features = face_anthropometry(np.concatenate([face, np.full_like(face, np.nan), no_jaw]))
    template = face_anthropometry(mean_face())[0]
    assert np.isfinite(features).all()
    np.testing.assert_allclose(features[1], template, atol=1e-5)
    np.testing.assert_allclose(features[2], template, atol=1e-5)
    assert not np.allclose(features[0], template, atol=1e-3)


def test_anthropometry_is_a_landmark_feature_kind_and_refuses_a_degenerate_face():
    assert FEATURE_KINDS["face_anthropometry"] is face_anthropometry
    np.testing.assert_allclose(landmark_features("face_anthropometry", mean_face(), "vggface2"),
                               face_anthropometry(mean_face()))
    with pytest.raises(ValueError, match="face_anthropometry: landmarks with both eye centres on one point"):
        face_anthropometry(np.zeros((1, 68, 2)))
