"""Skin colour of the aligned face (facediag.models.skin_colour), a fused-DTL2 source read from the crop."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from facediag.core.crop import DEFAULT_CROP
from facediag.models.geometry import MIRROR, TEMPLATE_JAW
from facediag.models.skin_colour import KIND, SKIN_COLOUR, skin_colour, skin_region
from facediag.preprocess.align import template_landmarks

SIZE = 150


def face_points() -> np.ndarray:
    """dlib's mean face with the London mean jaw in the default crop's pixels: (68, 2)."""
    unit = template_landmarks("dlib")
    unit[:17] = TEMPLATE_JAW
    return (DEFAULT_CROP.padding + unit) / (2 * DEFAULT_CROP.padding + 1) * SIZE


def skin_crop(seed: int = 0) -> np.ndarray:
    """(1, SIZE, SIZE, 3) uint8: a skin-like colour with pixel noise."""
    rng = np.random.default_rng(seed)
    return np.clip(np.array([200, 150, 130]) + rng.normal(0, 6, (1, SIZE, SIZE, 3)), 0, 255).astype(np.uint8)


def yellower(crop: np.ndarray, delta: float) -> np.ndarray:
    """The crop with CIELAB b* raised by ``delta`` everywhere (L* and a* kept), as the simulator shifts it."""
    lab = cv2.cvtColor(crop[0].astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    lab[..., 2] += delta
    rgb = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)[None]


def column(features: np.ndarray, name: str) -> float:
    return float(features[0, SKIN_COLOUR.index(name)])


def test_a_yellower_skin_reads_higher_b_star_by_the_amount_applied():
    crop, points = skin_crop(), face_points()[None]
    before, after = skin_colour(crop, points), skin_colour(yellower(crop, 4.0), points)
    assert before.shape == (1, len(SKIN_COLOUR)) and before.dtype == np.float32
    for name in ("b_mean", "b_median"):
        assert column(after, name) - column(before, name) == pytest.approx(4.0, abs=0.3)
    for name in ("L_mean", "a_mean", "L_median", "a_median"):
        assert column(after, name) == pytest.approx(column(before, name), abs=0.3)


def test_the_skin_is_the_face_without_brows_eyes_and_lips():
    points = face_points()
    skin = skin_region(points, SIZE)

    def at(i: int | list[int]) -> bool:
        x, y = np.round(points[i].reshape(-1, 2).mean(axis=0)).astype(int)
        return bool(skin[y, x])

    assert at([1, 31]) and at([15, 35]) and at(30) and at([8, 57])  # cheeks, nose tip, chin
    assert not any(at(part) for part in ([36, 39], [42, 45], 19, 24, [62, 66], [48, 49]))  # eyes, brows, lips
    assert not skin[0].any() and not skin[:, 0].any()  # outside the face


def test_pixels_outside_the_skin_do_not_change_it():
    crop, points = skin_crop(), face_points()[None]
    painted = crop.copy()
    painted[0][~skin_region(points[0], SIZE)] = (20, 200, 255)  # background, hair, eyes, lips: anything
    np.testing.assert_array_equal(skin_colour(painted, points), skin_colour(crop, points))


def test_a_mirrored_face_reads_about_the_same():
    crop, points = skin_crop(1), face_points()
    crop[0, :, : SIZE // 2] = np.clip(crop[0, :, : SIZE // 2].astype(int) + 20, 0, 255)  # a lighter left half
    mirrored_points = points[MIRROR].copy()
    mirrored_points[:, 0] = SIZE - 1 - mirrored_points[:, 0]
    np.testing.assert_allclose(skin_colour(crop[:, :, ::-1], mirrored_points[None]), skin_colour(crop, points[None]),
                               atol=0.3)


def test_a_face_without_landmarks_is_read_in_the_template_face():
    crop = skin_crop()
    crop[0, 110:] = 0  # below the template face's lips: not read without a jaw line
    template = face_points()
    template[:17] = np.nan
    missing = np.full((1, 68, 2), np.nan)
    np.testing.assert_array_equal(skin_colour(crop, missing), skin_colour(crop, template[None]))
    assert np.isfinite(skin_colour(crop, missing)).all()


def test_the_fused_strategy_takes_skin_colour_as_a_features_source_that_reads_the_crop(tmp_path):
    from facediag.preprocess.faces import Faces
    from facediag.strategies.fused import FusedDTL2, measured_features, reads_crop
    from tests.conftest import compose_train

    cfg = compose_train(tmp_path, "method=dlib_resnet_anthropometry_averaged_mesh_colour_dtl2_fused")
    sources = [dict(s) for s in cfg.strategy.sources]
    assert sources[-1] == {"features": KIND} and reads_crop(sources[-1]) and not reads_crop(sources[1])
    assert FusedDTL2(sources=sources).sources == sources
    crop, points = skin_crop(), face_points()[None].astype(np.float32)
    faces = Faces(DEFAULT_CROP, pd.DataFrame({"path": ["a.jpg"]}), (None,), crop, points)  # type: ignore[arg-type]
    np.testing.assert_array_equal(measured_features(KIND, faces), skin_colour(crop, points))
    np.testing.assert_array_equal(measured_features(KIND, faces, mirror=True), skin_colour(crop, points))
