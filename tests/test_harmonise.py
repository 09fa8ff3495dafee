"""Capture harmonisation (``preprocess.harmonise``): each step does what it says, crops are cached apart, and a run
through ``python train.py`` uses them."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage.data import astronaut

from facediag.audit.capture import grain
from facediag.core.crop import DEFAULT_CROP, CropSpec
from facediag.preprocess import FaceResult, Preprocessor, SimilarityAligner
from facediag.preprocess.align import template_landmarks
from facediag.preprocess.harmonise import (
    FILL_RGB,
    Background,
    Blur,
    Harmoniser,
    Jpeg,
    Noise,
    Resample,
    eye_distance,
    face_mask,
    make_step,
)
from tests.conftest import train_cli


def face_points(size: int, scale: float = 0.6) -> np.ndarray:
    """68 landmarks of dlib's mean face (jaw points on an ellipse), centred in a ``size`` px square."""
    unit = template_landmarks("dlib")
    angles = np.linspace(np.pi, 2 * np.pi, 17)  # the jaw: a half ellipse below the eyes
    unit[:17] = np.stack([0.5 - 0.55 * np.cos(angles), 0.35 - 0.8 * np.sin(angles)], axis=1)
    return ((unit - 0.5) * scale * size + size / 2).astype(np.float32)


def textured(size: int, seed: int = 0) -> np.ndarray:
    """A uint8 RGB picture: smooth gradients plus fine grain (like a photo's sensor noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    smooth = np.stack([200 * x + 20, 180 * y + 30, 120 * (x + y) / 2 + 60], axis=-1)
    return np.clip(smooth + rng.normal(0, 6, smooth.shape), 0, 255).astype(np.uint8)


def jpeg_copy(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def test_background_fill_keeps_the_face_and_erases_a_background_pattern():
    size = 160
    checks = ((np.indices((size, size)).sum(0) // 4) % 2 * 255).astype(np.uint8)
    crop = np.dstack([checks, 255 - checks, checks])
    points = face_points(size)
    face = face_mask(points, size, 0.1)
    filled = Background(dilate=0.1).crop(crop, points)
    assert 0.2 < face.mean() < 0.8
    np.testing.assert_array_equal(filled[face], crop[face])
    assert (filled[~face] == np.array(FILL_RGB, dtype=np.uint8)).all()
    assert np.ptp(filled[~face], axis=0).max() == 0  # no pattern left outside the face
    assert Background().crop(crop, None) is crop  # no landmarks (a centre-crop fallback): nothing to fill by


def test_jpeg_round_trip_brings_two_differently_compressed_copies_close():
    original = textured(224)
    fine, coarse = jpeg_copy(original, 98), jpeg_copy(original, 40)
    before = np.abs(fine.astype(float) - coarse).mean()
    grain_before = abs(grain(fine.mean(-1)) - grain(coarse.mean(-1)))
    step = Jpeg()  # quality 75: closer, not equal (re-compressing a coarse copy adds artefacts of its own)
    fine_after, coarse_after = step.crop(fine, None), step.crop(coarse, None)
    after = np.abs(fine_after.astype(float) - coarse_after).mean()
    assert after < 0.8 * before
    assert abs(grain(fine_after.mean(-1)) - grain(coarse_after.mean(-1))) < grain_before / 2
    assert fine_after.shape == fine.shape and fine_after.dtype == np.uint8


def test_resample_puts_the_eyes_the_given_distance_apart_and_moves_the_landmarks_with_the_pixels():
    size = 1000
    points = face_points(size)
    image = np.zeros((size, size, 3), np.uint8)
    eye = points[36:42].mean(0)
    cv2.circle(image, tuple(int(round(v)) for v in eye), 12, (255, 255, 255), -1)
    result = FaceResult(path="a.png", status="ok", landmarks=points, box=(0, 0, size, size), image_size=(size, size))
    assert eye_distance(points) > 200
    small, moved = Resample(px=32).photo(image, result)
    assert eye_distance(moved.landmarks) == pytest.approx(32, abs=0.2)
    assert moved.image_size == (small.shape[1], small.shape[0])
    assert small.shape[0] == pytest.approx(size * 32 / eye_distance(points), abs=1)
    grey = small[..., 0].astype(float)
    ys, xs = np.nonzero(grey > 0)
    centre = np.average(np.stack([xs, ys], 1), axis=0, weights=grey[ys, xs])
    np.testing.assert_allclose(centre, moved.landmarks[36:42].mean(0), atol=0.3)
    same, unchanged = Resample(px=10_000).photo(image, result)  # eyes already closer: never enlarged
    assert same is image and unchanged is result


def test_resampled_crop_has_the_geometry_of_the_plain_crop_and_loses_the_finer_detail():
    size = 900
    points = face_points(size)
    x = np.arange(size)
    stripes = (128 + 60 * np.sin(2 * np.pi * x / 12)).astype(np.uint8)  # detail a plain 224 px crop keeps
    image = np.dstack([np.tile(stripes, (size, 1))] * 3)
    cv2.circle(image, tuple(int(round(v)) for v in points[30]), 30, (250, 10, 10), -1)  # a red nose tip
    result = FaceResult(path="a.png", status="ok", landmarks=points, image_size=(size, size))
    aligner = SimilarityAligner()
    plain = aligner.crop(image, result, CropSpec(224, "vggface2", 0.2))
    resampled = Harmoniser(["resample"]).crop(aligner, image, result, CropSpec(224, "vggface2", 0.2))

    def red_centre(crop: np.ndarray) -> np.ndarray:
        weight = np.clip(crop[..., 0].astype(float) - crop[..., 1] - 100, 0, None)  # the disk, not the stripes
        ys, xs = np.nonzero(weight)
        return np.average(np.stack([xs, ys], 1), axis=0, weights=weight[ys, xs])

    np.testing.assert_allclose(red_centre(resampled), red_centre(plain), atol=0.5)
    forehead = (slice(40, 70), slice(60, 160))
    assert plain[forehead][..., 1].std() > 10  # the stripes, in the plain crop
    assert resampled[forehead][..., 1].std() < plain[forehead][..., 1].std() / 10  # gone at 32 px between the eyes
    box_filter = Harmoniser([{"step": "resample", "interpolation": "area"}])
    boxed = box_filter.crop(aligner, image, result, CropSpec(224, "vggface2", 0.2))
    assert boxed[forehead][..., 1].std() > resampled[forehead][..., 1].std() * 5  # a box filter lets it alias through


def test_blur_and_matched_noise_bring_a_clean_and_a_grainy_copy_to_one_grain():
    clean = textured(224, 1)
    clean = cv2.GaussianBlur(clean, (0, 0), 2)
    grainy = np.clip(clean + np.random.default_rng(2).normal(0, 4, clean.shape), 0, 255).astype(np.uint8)
    gap = abs(grain(clean.mean(-1)) - grain(grainy.mean(-1)))
    steps = [Blur(sigma=1.5), Noise(sigma=3.0)]
    out = []
    for image in (clean, grainy):
        for step in steps:
            image = step.crop(image, None)
        out.append(image)
    assert abs(grain(out[0].mean(-1)) - grain(out[1].mean(-1))) < gap / 3
    np.testing.assert_array_equal(Noise(sigma=3.0).crop(clean, None), Noise(sigma=3.0).crop(clean, None))  # seeded
    assert Noise(sigma=1.0).crop(grainy, None) is grainy  # noisier than the level already: nothing added


def test_steps_are_read_from_names_and_mappings_and_bad_ones_are_refused():
    assert make_step("jpeg") == Jpeg(75)
    assert make_step({"step": "resample", "px": 40}) == Resample(40.0)
    with pytest.raises(ValueError, match="unknown harmonise step 'sharpen'"):
        make_step("sharpen")
    with pytest.raises(ValueError, match="no setting"):
        make_step({"step": "jpeg", "qualty": 60})
    with pytest.raises(ValueError, match="must come before"):
        Harmoniser(["jpeg", "resample"])
    with pytest.raises(ValueError, match="need landmarks"):
        Preprocessor(harmonise=["background"], progress=False)  # images already aligned: no landmarks
    Preprocessor(harmonise=["blur", "jpeg"], progress=False)


def test_the_crop_cache_key_changes_with_the_harmonise_settings_and_the_landmark_key_does_not():
    def keys(harmonise):
        pre = Preprocessor(harmonise=harmonise, progress=False)
        return pre._crop_key(CropSpec(224, "vggface2", 0.2)), pre.config_hash

    plain, default, worse = keys(None), keys(["jpeg"]), keys([{"step": "jpeg", "quality": 60}])
    assert len({plain[0], default[0], worse[0]}) == 3
    assert plain[0] == keys([])[0]  # no steps: the key every crop had before harmonisation existed
    assert default == keys([{"step": "jpeg", "quality": 75.0}])  # the same settings, written another way
    assert plain[1] == default[1] == worse[1]


def test_feature_cache_key_keeps_old_caches_without_harmonisation_and_separates_harmonised_ones(tmp_path):
    from facediag.models.feature_cache import backbone_feature_cache

    backbone = {"name": "dlib_resnet", "align": {"size": 150, "template": "dlib", "padding": 0.25}}
    weights = {"name": "dlib_faces"}
    folder = {name: backbone_feature_cache(tmp_path, backbone, weights, pre).folder
              for name, pre in (("old", {"no_face": "skip"}), ("none", {"no_face": "skip", "harmonise": []}),
                                ("jpeg", {"no_face": "skip", "harmonise": ["jpeg"]}))}  # fmt: skip
    assert folder["old"] == folder["none"] != folder["jpeg"]


def test_harmonised_crops_are_cached_apart_from_plain_ones(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(textured(256)).save(path)
    cache = tmp_path / "cache"
    options = {"cache_dir": cache, "progress": False, "n_workers": 1}
    plain = Preprocessor(**options).faces([path], CropSpec(224)).crops
    first = Preprocessor(**options, harmonise=["jpeg"]).faces([path], CropSpec(224)).crops
    again = Preprocessor(**options, harmonise=["jpeg"]).faces([path], CropSpec(224)).crops
    folders = sorted(p.name for p in cache.glob("preprocess/*/crops/*"))
    assert len(folders) == 2 and folders[1].startswith(folders[0] + "-h")
    assert not np.array_equal(plain, first)
    np.testing.assert_array_equal(first, again)


def test_a_detected_face_is_resampled_and_its_background_filled_through_the_pipeline(tmp_path):
    photo = cv2.resize(astronaut(), (1024, 1024), interpolation=cv2.INTER_CUBIC)
    path = tmp_path / "astronaut.png"
    Image.fromarray(photo).save(path)
    from facediag.preprocess import DlibHogDetector, DlibLandmarker

    pre = Preprocessor(DlibHogDetector(), DlibLandmarker(), n_workers=1, progress=False,
                       harmonise=["resample", "background", "jpeg"])  # fmt: skip
    faces = pre.faces([path], CropSpec(224, "vggface2", 0.2))
    crops, (result,) = faces.crops, faces.kept
    assert result.status == "ok" and eye_distance(result.landmarks) > 32
    corner = crops[0, :20, :20].reshape(-1, 3).astype(float)
    assert np.abs(corner - FILL_RGB).max() < 8  # background filled (JPEG rounds it a little)
    assert crops[0, 100:124, 100:124].std() > 5  # the face is still there


@pytest.mark.usefixtures("london_dir")
def test_train_cli_runs_on_harmonised_crops_and_caches_them_apart(tmp_path, shared_cache):
    from tests.faces_cache import faces_only_cache

    run_dir, cache = tmp_path / "run", faces_only_cache(shared_cache, tmp_path / "cache")
    for crops in cache.glob("preprocess/*/crops"):  # the session's landmarks, none of its crops
        shutil.rmtree(crops)
    train_cli(run_dir, cache, "strategy=dtl2", "strategy.C_grid=[1.0]",
              "preprocess.harmonise=[{step:resample,px:32},background,jpeg]", "controls=[]")  # fmt: skip
    crops = [p.name for p in cache.glob("preprocess/*/crops/*")]
    assert crops and all("-h" in name for name in crops)
    saved = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "step: resample" in saved and "px: 32" in saved
    assert (run_dir / "metrics.json").is_file()
    features = [Path(p).parent for p in cache.glob("features/*/key.json")]
    assert any('"harmonise"' in (f / "key.json").read_text() for f in features)


def test_identity_descriptors_are_read_from_plain_crops_whatever_the_model_sees(tmp_path):
    from facediag.data.identity import descriptor_cache

    harmonised = Preprocessor(progress=False, harmonise=["jpeg"])
    plain = harmonised.unharmonised()
    assert not plain.harmoniser and harmonised.harmoniser and plain.config_hash == harmonised.config_hash
    assert plain._crop_key(DEFAULT_CROP) == Preprocessor(progress=False)._crop_key(DEFAULT_CROP)
    keys = [descriptor_cache(tmp_path, {"no_face": "skip", "harmonise": steps}).folder for steps in ([], ["jpeg"])]
    assert keys[0] == keys[1]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["data=folder", "data.root=x"], ["resample", "background", "jpeg"]),
        (["data=dsf"], ["resample", "background", "jpeg"]),
        (["data=london"], []),
        (["data=folder", "data.root=x", "preprocess=none"], []),
        (["data=folder", "data.root=x", "data.harmonise=[]"], []),
        (["data=london", "preprocess.harmonise=[jpeg]"], ["jpeg"]),
    ],
)
def test_harmonisation_is_on_by_default_for_own_photos_and_off_for_the_london_demo(tmp_path, overrides, expected):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from tests.conftest import compose_train

    cfg = compose_train(tmp_path, *overrides)
    assert OmegaConf.to_container(cfg.preprocess, resolve=True)["harmonise"] == expected
    assert [step["step"] for step in instantiate(cfg.preprocess).harmoniser.describe()] == expected
