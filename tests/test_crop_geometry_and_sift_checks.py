"""Edges of the crop geometry (facediag.preprocess.align: dlib's chip warp) and of the DSIFT estimators'
parameters (facediag.classifiers.dense_sift), and how `predict` expands what it is given (facediag.apply.predict):
tiny arrays and folders, no model."""

from __future__ import annotations

import numpy as np
import pytest

from facediag.apply.predict import expand, predict
from facediag.classifiers.dense_sift import Chi2SVC, DenseSiftBow
from facediag.preprocess.align import region_mask, template_points, warp

IMAGE = np.full((20, 20, 3), 200, np.uint8)


def test_a_crop_of_a_region_outside_the_photo_is_black():
    far = np.array([[1.0, 0.0, -1000.0], [0.0, 1.0, -1000.0]])  # crop pixel (0, 0) is image pixel (1000, 1000)
    chip = warp(IMAGE, far, 16)
    assert chip.shape == (16, 16, 3) and not chip.any()


def test_a_face_far_larger_than_a_tiny_photo_is_reduced_to_nothing_and_gives_a_black_crop():
    huge = np.array([[0.01, 0.0, 0.0], [0.0, 0.01, 0.0]])  # the crop spans 400 x 400 image pixels
    chip = warp(IMAGE, huge, 4)
    assert chip.shape == (4, 4, 3) and not chip.any()


def test_warp_and_templates_refuse_what_they_cannot_use():
    with pytest.raises(ValueError, match=r"expected a uint8 \(H, W, 3\) image, got float64 \(20, 20, 3\)"):
        warp(IMAGE.astype(float), np.eye(2, 3), 8)
    with pytest.raises(ValueError, match="need size > 0 and padding >= 0, got size=150, padding=-0.1"):
        template_points("dlib", 150, -0.1)
    with pytest.raises(ValueError, match="points must be 68 or 5, got 3"):
        template_points("dlib", 150, 0.25, points=3)


def test_a_region_of_missing_landmarks_is_empty():
    points = np.full((68, 2), np.nan, np.float32)
    mask = region_mask(points, 32)
    assert mask.shape == (32, 32) and mask.dtype == bool and not mask.any()


@pytest.mark.parametrize(("params", "message"), [
    ({"step": 0}, "step must be a positive number of pixels, got 0"),
    ({"sizes": ()}, r"sizes must be positive patch sizes in pixels, got \(\)"),
    ({"sizes": (8, -1)}, "sizes must be positive patch sizes"),
    ({"n_words": 1}, "n_words must be at least 2, got 1"),
    ({"max_descriptors_per_image": 0}, "max_descriptors_per_image must be positive, got 0"),
])  # fmt: skip
def test_dense_sift_parameters_that_cannot_work_are_named_before_any_image_is_read(params, message):
    with pytest.raises(ValueError, match=f"DenseSiftBow: {message}"):
        DenseSiftBow(**params).fit(np.zeros((2, 32, 32, 3), np.uint8))


@pytest.mark.parametrize(("gamma", "message"), [("median", "gamma must be a positive number or 'mean', got 'median'"),
                                                (0.0, "gamma must be positive, got 0.0")])
def test_a_chi2_svm_names_a_gamma_it_cannot_use(gamma, message):
    x, y = np.abs(np.random.default_rng(0).normal(size=(6, 4))), [0, 1] * 3
    with pytest.raises(ValueError, match=f"Chi2SVC: {message}"):
        Chi2SVC(gamma=gamma).fit(x, y)


def test_predict_expands_folders_and_globs_and_names_a_pattern_that_matches_nothing(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/1.jpg", "a/b/2.png", "a/.hidden.jpg", "a/notes.txt", "c.jpg"):
        (tmp_path / name).write_bytes(b"x")
    images, others = expand([str(tmp_path / "a*"), str(tmp_path / "c.jpg")])
    assert images == [str(tmp_path / "a/1.jpg"), str(tmp_path / "a/b/2.png"), str(tmp_path / "c.jpg")]
    assert sorted(path for path, _, _ in others) == [str(tmp_path / "a/.hidden.jpg"), str(tmp_path / "a/notes.txt")]
    with pytest.raises(SystemExit, match=r"nothing\*.jpg: the pattern matches no file"):
        expand([str(tmp_path / "nothing*.jpg")])
    with pytest.raises(SystemExit, match="neighbours must be a whole number, got 'three'"):
        predict([str(tmp_path / "c.jpg")], {"run": str(tmp_path), "neighbours": "three"})
