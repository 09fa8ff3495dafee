"""dlib's landmarks averaged over perturbed starts (facediag.preprocess.averaged_landmarks): the mirror mapping, the
starts, the points on a real face, the cache and the option of a fused landmark source."""

from __future__ import annotations

import numpy as np
import pytest

from facediag.core.crop import CropSpec
from facediag.models.geometry import MIRROR
from facediag.preprocess import DlibHogDetector, DlibLandmarker, FaceResult, Preprocessor, averaged_landmarks
from facediag.preprocess.align import transform_points
from facediag.preprocess.averaged_landmarks import (
    STARTS,
    AveragedDlibLandmarker,
    mirror_box,
    mirror_points,
    started,
)
from facediag.strategies.fused import landmark_crop

#: a box around the face of a 150 px London chip (dlib's get_face_chip, padding 0.25), off the half-pixel grid
CHIP_BOX = (27.3, 24.1, 122.6, 121.9)


def test_points_found_in_the_mirrored_photo_map_back_with_the_left_right_permutation():
    points = np.random.default_rng(0).uniform(0, 99, (68, 2))
    in_mirror = np.column_stack([99 - points[:, 0], points[:, 1]])[MIRROR]  # what the predictor sees there
    assert mirror_points(in_mirror, 100) == pytest.approx(points)
    assert mirror_points(in_mirror, 100)[45] == pytest.approx([99 - in_mirror[36, 0], in_mirror[36, 1]])


def test_the_starts_are_the_box_itself_and_a_left_right_symmetric_set():
    box = (10.0, 20.0, 110.0, 140.0)
    assert started(box, *STARTS[0]) == pytest.approx(box)
    assert started(box, 0.05, -0.05, 1.1) == pytest.approx((10.0, 8.0, 120.0, 140.0))
    assert {(-x, y, s) for x, y, s in STARTS} == set(STARTS)
    assert mirror_box(mirror_box(box, 200), 200) == pytest.approx(box)


@pytest.fixture(scope="module")
def chip(london_chips) -> np.ndarray:
    return london_chips[0]


def test_averaged_points_lie_near_one_pass_and_are_deterministic_on_a_real_face(chip):
    averaged = AveragedDlibLandmarker().landmarks(chip, CHIP_BOX)
    once = DlibLandmarker().landmarks(chip, CHIP_BOX)
    inter_ocular = np.linalg.norm(once[36:42].mean(axis=0) - once[42:48].mean(axis=0))
    gap = np.linalg.norm(averaged - once, axis=1) / inter_ocular
    assert averaged.shape == (68, 2) and averaged.dtype == np.float32
    assert np.median(gap) < 0.03 and gap.max() < 0.1 and gap.max() > 0  # close, but not the single pass
    assert (AveragedDlibLandmarker().landmarks(chip, CHIP_BOX) == averaged).all()


def test_a_mirrored_photo_gives_the_mirrored_points(chip):
    landmarker = AveragedDlibLandmarker()
    width = chip.shape[1]
    mirrored = landmarker.landmarks(np.ascontiguousarray(chip[:, ::-1]), mirror_box(CHIP_BOX, width))
    assert mirror_points(mirrored, width) == pytest.approx(landmarker.landmarks(chip, CHIP_BOX), abs=1e-3)


class CountingLandmarker(AveragedDlibLandmarker):
    """Points at the box's top-left corner plus a face-like spread (eyes apart); counts every instance's calls."""

    calls = 0

    def landmarks(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        CountingLandmarker.calls += 1
        return (FACE + np.asarray(box[:2])).astype(np.float32)

    def describe(self) -> dict:
        return {"name": "counting"}


FACE = np.random.default_rng(0).uniform(0, 20, (68, 2)) + np.where(np.arange(68)[:, None] < 42, -10, 10) * [1, 0]


def test_preprocessor_gives_averaged_landmarks_from_the_face_box_in_crop_pixels_once_per_photo(monkeypatch, tmp_path):
    from PIL import Image

    photo = tmp_path / "face.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(photo)
    own = FACE.astype(np.float32)
    results = [FaceResult(path=str(photo), status="ok", image_size=(8, 8), box=(1.0, 2.0, 7.0, 8.0), landmarks=own,
                          sha256="a" * 64),
               FaceResult(path=str(photo), status="center_crop", image_size=(8, 8), sha256="b" * 64)]
    monkeypatch.setattr(averaged_landmarks, "AveragedDlibLandmarker", CountingLandmarker)
    monkeypatch.setattr(CountingLandmarker, "calls", 0)
    pre = Preprocessor(DlibHogDetector(), DlibLandmarker(), cache_dir=tmp_path / "cache", progress=False)
    crop = CropSpec(150, "dlib", 0.25)
    expected = transform_points(FACE + [1.0, 2.0], pre.aligner.crop_matrix(results[0], crop))
    for _ in range(2):  # the second time from the cache
        found = pre.crop_landmarks(results, crop, landmarker="dlib_averaged")
        assert found[0] == pytest.approx(expected, abs=1e-3) and np.isnan(found[1]).all()
    assert CountingLandmarker.calls == 1


def test_a_fused_landmark_source_takes_dlib_averaged_as_its_landmarker():
    assert landmark_crop({"features": "face_anthropometry", "landmarker": "dlib_averaged"}) == CropSpec.of({})
    with pytest.raises(ValueError, match="dlib_averaged"):
        landmark_crop({"features": "face_anthropometry", "landmarker": "dlib_median"})
