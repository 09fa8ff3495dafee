"""Alignment math: Umeyama similarity fit, templates, five points, and the dlib-identical warp."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facediag.preprocess.align import (
    DLIB_FIT_INDICES,
    alignment_matrix,
    center_square_resize,
    chip_matrix,
    five_points,
    invert_affine,
    resize_matrix,
    template_landmarks,
    template_points,
    transform_points,
    umeyama,
    warp,
)


def similarity(scale: float, degrees: float, tx: float, ty: float) -> np.ndarray:
    angle = math.radians(degrees)
    rotation = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return np.hstack([rotation, [[tx], [ty]]])


def face_landmarks(matrix: np.ndarray) -> np.ndarray:
    """68 landmarks: dlib's mean face (jaw filled in) mapped from its unit square through ``matrix``."""
    unit = template_landmarks("dlib")
    unit[:17] = np.stack([np.linspace(0.0, 1.0, 17), 0.3 + 0.8 * np.sin(np.linspace(0, np.pi, 17))], axis=1)
    return transform_points(unit, matrix).astype(np.float32)


@pytest.mark.parametrize("scale, degrees, tx, ty", [(1, 0, 0, 0), (2.5, 30, -40, 7.5), (0.3, -170, 5, 900)])
def test_umeyama_recovers_a_known_similarity_transform(scale, degrees, tx, ty):
    src = np.random.default_rng(0).uniform(-50, 50, size=(20, 2))
    truth = similarity(scale, degrees, tx, ty)
    np.testing.assert_allclose(umeyama(src, transform_points(src, truth)), truth, atol=1e-9)


def test_umeyama_is_the_least_squares_fit_under_noise_and_never_reflects():
    rng = np.random.default_rng(1)
    src = rng.uniform(-50, 50, size=(200, 2))
    truth = similarity(1.7, 12.0, 3.0, -4.0)
    dst = transform_points(src, truth) + rng.normal(0, 0.5, size=src.shape)
    fitted = umeyama(src, dst)
    np.testing.assert_allclose(fitted[:, :2], truth[:, :2], atol=0.01)
    np.testing.assert_allclose(fitted[:, 2], truth[:, 2], atol=0.2)
    residual = ((transform_points(src, fitted) - dst) ** 2).sum()
    for nudge in (similarity(1.001, 0, 0, 0), similarity(1, 0.1, 0, 0), similarity(1, 0, 0.05, 0)):
        worse = np.vstack([nudge @ np.vstack([fitted, [0, 0, 1]])])
        assert ((transform_points(src, worse) - dst) ** 2).sum() > residual
    mirrored = src * [-1, 1]
    assert np.linalg.det(umeyama(src, mirrored)[:, :2]) > 0


def test_umeyama_without_scale_gives_a_rigid_transform():
    src = np.random.default_rng(2).uniform(-50, 50, size=(10, 2))
    fitted = umeyama(src, transform_points(src, similarity(3.0, 45.0, 1, 2)), with_scale=False)
    np.testing.assert_allclose(np.linalg.det(fitted[:, :2]), 1.0, atol=1e-9)


def test_umeyama_rejects_mismatched_or_degenerate_points():
    with pytest.raises(ValueError, match="matching"):
        umeyama(np.zeros((5, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="identical"):
        umeyama(np.ones((5, 2)), np.zeros((5, 2)))


def test_five_points_are_eye_centres_nose_tip_and_mouth_corners():
    landmarks = np.arange(136, dtype=np.float64).reshape(68, 2)
    points = five_points(landmarks)
    np.testing.assert_allclose(points[0], landmarks[36:42].mean(0))
    np.testing.assert_allclose(points[1], landmarks[42:48].mean(0))
    np.testing.assert_allclose(points[2:], landmarks[[30, 48, 54]])
    with pytest.raises(ValueError, match="68"):
        five_points(np.zeros((5, 2)))


@pytest.mark.parametrize("template", ["dlib", "vggface2"])
@pytest.mark.parametrize("points", [68, 5])
def test_alignment_maps_a_transformed_mean_face_exactly_onto_the_template(template, points):
    landmarks = face_landmarks(similarity(300.0, -20.0, 400.0, 250.0))
    matrix = alignment_matrix(landmarks, 150, template, 0.25, points)
    indices, targets = template_points(template, 150, 0.25, points)
    mapped = transform_points(landmarks, matrix)
    mapped = mapped[indices] if points == 68 else five_points(mapped)
    np.testing.assert_allclose(mapped, targets, atol=1e-3)
    eyes = five_points(transform_points(landmarks, matrix))[:2]
    assert abs(eyes[0, 1] - eyes[1, 1]) < 1e-3  # eyes level


def test_dlib_template_uses_dlibs_fit_points_and_padding_rule():
    assert list(DLIB_FIT_INDICES) == [*range(27, 55), *range(60, 65)]
    _, targets = template_points("dlib", 150, 0.25, 68)
    unit = template_landmarks("dlib")[27]
    np.testing.assert_allclose(targets[0], (0.25 + unit) / 1.5 * 150)


def test_vggface2_template_is_looser_than_dlibs_and_centred():
    dlib_eyes = five_points(np.nan_to_num(template_landmarks("dlib")))[:2]
    vgg_eyes = five_points(np.nan_to_num(template_landmarks("vggface2")))[:2]
    assert np.linalg.norm(vgg_eyes[1] - vgg_eyes[0]) < np.linalg.norm(dlib_eyes[1] - dlib_eyes[0])
    assert abs(vgg_eyes[:, 0].mean() - 0.5) < 0.02


def test_unknown_template_and_bad_landmarks_are_refused():
    with pytest.raises(ValueError, match="unknown template"):
        template_points("arcface", 112, 0.0)
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        alignment_matrix(np.zeros((5, 2)), 150)


def test_warp_equals_dlib_get_face_chip_pixel_for_pixel():
    dlib = pytest.importorskip("dlib")
    from skimage.data import astronaut

    image = astronaut()
    landmarks = np.round(face_landmarks(similarity(95.0, 8.0, 180.0, 80.0)))
    parts = [dlib.point(int(x), int(y)) for x, y in landmarks]
    shape = dlib.full_object_detection(dlib.rectangle(170, 70, 280, 190), parts)
    for size, padding in [(150, 0.25), (224, 0.4), (60, 0.0)]:
        expected = dlib.get_face_chip(image, shape, size=size, padding=padding)
        ours = warp(image, alignment_matrix(landmarks, size, "dlib", padding), size)
        np.testing.assert_array_equal(ours, expected)


def test_warp_paints_outside_the_image_black_and_chip_matrix_tracks_matrix():
    image = np.full((100, 100, 3), 200, dtype=np.uint8)
    matrix = similarity(1.0, 0.0, 60.0, 60.0)  # the image lands in the crop's lower right
    crop = warp(image, matrix, 120)
    assert crop.shape == (120, 120, 3) and crop.dtype == np.uint8
    assert (crop[:50, :50] == 0).all() and (crop[70:150, 70:150] == 200).all()
    matrix = similarity(0.4, 15.0, -10.0, 5.0)
    grid = np.stack(np.meshgrid(np.arange(0, 150, 10.0), np.arange(0, 150, 10.0)), -1).reshape(-1, 2)
    back = transform_points(transform_points(grid, invert_affine(matrix)), chip_matrix(matrix, 150))
    assert np.abs(back - grid).max() < 1.0  # dlib's chip geometry moves points by under a pixel


def test_center_square_resize_keeps_the_whole_central_square_and_resize_matrix_matches_it():
    image = np.zeros((60, 90, 3), dtype=np.uint8)
    image[:, 15:75] = 255  # the central 60x60 square
    image[20, 45] = 7  # a marker pixel
    crop = center_square_resize(image, 60)
    assert crop.shape == (60, 60, 3)
    assert crop[..., 0].min() == 7 and (crop == 7).sum() == 3
    np.testing.assert_allclose(transform_points([[45, 20]], resize_matrix(90, 60, 60)), [[30, 20]])
    image[20, 45] = 255
    assert center_square_resize(image, 30).min() == 255  # no black border, nothing from outside the square
