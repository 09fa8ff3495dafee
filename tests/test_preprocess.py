"""Preprocessing pipeline: robust reading, detection policies, bad files, cache, backends, report, QA grid."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage.data import astronaut, coffee

from facediag.core.crop import CropSpec
from facediag.preprocess import (
    DlibHogDetector,
    DlibLandmarker,
    FaceResult,
    FanDetector,
    FanLandmarker,
    ModelUnavailableError,
    Preprocessor,
    ResizeAligner,
    SimilarityAligner,
)
from facediag.preprocess.align import (
    alignment_matrix,
    center_square_resize,
    chip_matrix,
    five_points,
    template_landmarks,
    template_points,
    transform_points,
    warp,
)
from facediag.preprocess.face_results import REPORT_COLUMNS, summarise
from facediag.preprocess.pipeline import downscale
from tests.conftest import REPO, compose_train

ASTRONAUT_FACE = (175, 75, 270, 175)  # x0, y0, x1, y1 around the face in skimage's astronaut()


@pytest.fixture(scope="module")
def stages() -> tuple[DlibHogDetector, DlibLandmarker]:
    """One dlib detector + landmarker for the module (the 68-point model takes ~1 s to load)."""
    detector, landmarker = DlibHogDetector(), DlibLandmarker()
    landmarker.model  # noqa: B018  (load once)
    return detector, landmarker


@pytest.fixture
def make(stages):
    def build(**options) -> Preprocessor:
        options = {"n_workers": 1, "progress": False, **options}
        return Preprocessor(*stages, **options)

    return build


def save(image: np.ndarray | Image.Image, path: Path, **params) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(path, **params)
    return str(path)


def inside(box, region) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return region[0] < cx < region[2] and region[1] < cy < region[3]


# ------------------------------------------------------------------------ reading and conversion


def test_exif_rotated_photo_is_landmarked_upright(make, tmp_path):
    upright = astronaut()
    sideways = np.ascontiguousarray(np.rot90(upright, 1))  # stored lying on its side
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = save(sideways, tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    reference = make().landmarks([save(upright, tmp_path / "upright.jpg", quality=95)])[0]
    (result,) = make().landmarks([path])
    assert result.status == "ok", result.reason
    assert result.image_size == (512, 512)
    eyes, mouth = result.landmarks[36:48, 1].mean(), result.landmarks[48:68, 1].mean()
    assert eyes < mouth  # upright: eyes above the mouth
    np.testing.assert_allclose(five_points(result.landmarks), five_points(reference.landmarks), atol=3)


@pytest.mark.parametrize(
    "kind",
    ["cmyk_jpeg", "gray16_png", "rgba_png", "gray_jpeg", "palette_png"],
)
def test_unusual_image_modes_are_converted_and_the_face_is_found(make, tmp_path, kind):
    rgb = astronaut()
    if kind == "cmyk_jpeg":
        path = save(Image.fromarray(rgb).convert("CMYK"), tmp_path / "a.jpg", quality=95)
    elif kind == "gray16_png":
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257
        image = Image.fromarray(gray)
        assert image.mode.startswith("I;16")
        path = save(image, tmp_path / "a.png")
    elif kind == "rgba_png":
        alpha = np.full(rgb.shape[:2], 255, dtype=np.uint8)
        alpha[:, 400:] = 0  # transparent strip: composited on white
        path = save(np.dstack([rgb, alpha]), tmp_path / "a.png")
    elif kind == "gray_jpeg":
        path = save(Image.fromarray(rgb).convert("L"), tmp_path / "a.jpg", quality=95)
    else:
        path = save(Image.fromarray(rgb).quantize(256), tmp_path / "a.png")
    (result,) = make().landmarks([path])
    assert result.status == "ok", result.reason
    assert inside(result.box, ASTRONAUT_FACE)
    faces = make().faces([path], CropSpec(150))
    crops, kept = faces.crops, list(faces.kept)
    assert crops.shape == (1, 150, 150, 3) and crops.dtype == np.uint8 and kept[0].path == path


# ------------------------------------------------------------------------ detection policies


def test_image_without_a_face_is_skipped_with_a_reason(make, tmp_path):
    path = save(coffee(), tmp_path / "coffee.png")
    (result,) = make().landmarks([path])
    assert result.status == "no_face" and result.n_faces == 0 and result.landmarks is None
    assert "no face found" in result.reason and "upsampled" in result.reason
    faces = make().faces([path], CropSpec(64))
    crops, kept = faces.crops, list(faces.kept)
    assert crops.shape == (0, 64, 64, 3) and kept == []


def test_center_crop_policy_flags_the_image_and_crops_its_central_square(make, tmp_path):
    path = save(coffee(), tmp_path / "coffee.png")
    preprocessor = make(no_face="center_crop")
    (result,) = preprocessor.landmarks([path])
    assert result.status == "center_crop" and result.fallback == "center_crop"
    faces = preprocessor.faces([path], CropSpec(64))
    crops, kept = faces.crops, list(faces.kept)
    np.testing.assert_array_equal(crops[0], center_square_resize(coffee(), 64))
    assert kept[0].status == "center_crop"


def test_small_face_is_found_on_the_upsampled_retry(make, tmp_path):
    tiny = cv2.resize(astronaut(), (200, 200), interpolation=cv2.INTER_AREA)  # face ~35 px: too small for HOG
    (result,) = make().landmarks([save(tiny, tmp_path / "tiny.png")])
    assert result.status == "ok" and result.fallback == "upsampled"
    (strict,) = make(retry_upsampled=False).landmarks([save(tiny, tmp_path / "tiny2.png")])
    assert strict.status == "no_face"


def test_two_faces_keep_the_largest_and_count_both(make, tmp_path):
    head = astronaut()[20:260, 110:340]
    small = cv2.resize(head, None, fx=0.7, fy=0.7, interpolation=cv2.INTER_AREA)
    canvas = np.full((240, 400, 3), 200, dtype=np.uint8)
    canvas[:, :230] = head
    canvas[: small.shape[0], 230 : 230 + small.shape[1]] = small
    (result,) = make().landmarks([save(canvas, tmp_path / "two.png")])
    assert result.status == "ok" and result.n_faces == 2
    assert (result.box[0] + result.box[2]) / 2 < 230  # the larger, left face


def test_detection_runs_on_a_downscaled_copy_and_maps_boxes_back(stages, tmp_path):
    big = cv2.resize(astronaut(), (1400, 1400), interpolation=cv2.INTER_CUBIC)
    seen: list[tuple[int, int]] = []

    class Recording(DlibHogDetector):
        def detect(self, image, upsample=False):
            seen.append(image.shape[:2])
            return super().detect(image, upsample)

    preprocessor = Preprocessor(Recording(), stages[1], n_workers=1, progress=False, detect_max_side=640)
    (result,) = preprocessor.landmarks([save(big, tmp_path / "big.png")])
    assert seen == [(640, 640)]
    scale = 1400 / 512
    assert result.status == "ok" and inside(result.box, [v * scale for v in ASTRONAUT_FACE])
    assert downscale(big, 640).shape == (640, 640, 3) and downscale(big, 2000) is big


# ------------------------------------------------------------------------ bad files


def test_bad_files_are_reported_by_name_and_never_stop_the_run(make, tmp_path):
    good = save(astronaut(), tmp_path / "good.jpg")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(Path(good).read_bytes()[:3000])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    missing = tmp_path / "missing.jpg"
    paths = [str(truncated), good, str(empty), str(text), str(missing)]
    results = make().landmarks(paths)
    report = make().report(results).set_index("path")
    assert report.loc[good, "status"] == "ok"
    reasons = {
        str(truncated): "cannot be decoded",
        str(empty): "empty file",
        str(text): "not a recognised image format",
        str(missing): "file not found",
    }
    for path, reason in reasons.items():
        assert report.loc[path, "status"] == "error"
        assert reason in report.loc[path, "reason"]
    faces = make().faces(paths, CropSpec(32))
    crops, kept = faces.crops, list(faces.kept)
    assert [r.path for r in kept] == [good] and len(crops) == 1
    assert "notes.jpg" in summarise(results)


def test_decompression_bomb_is_refused(make, tmp_path):
    path = save(astronaut(), tmp_path / "big.png")
    (result,) = make(max_pixels=100_000).landmarks([path])
    assert result.status == "error" and "exceeds the limit" in result.reason


# ------------------------------------------------------------------------ cache


def test_second_run_reads_landmarks_and_crops_from_the_cache(stages, tmp_path, monkeypatch):
    calls = []

    class Counting(DlibHogDetector):
        def detect(self, image, upsample=False):
            calls.append(upsample)
            return super().detect(image, upsample)

    def build() -> Preprocessor:
        return Preprocessor(Counting(), stages[1], cache_dir=tmp_path / "cache", n_workers=1, progress=False)

    paths = [save(astronaut(), tmp_path / "a.png"), save(coffee(), tmp_path / "b.png")]
    first = build().landmarks(paths)
    first_crops = build().faces(paths, CropSpec(150)).crops
    assert len(calls) == 3  # astronaut once, coffee twice (upsampled retry)

    import facediag.preprocess.pipeline as pipeline

    def no_decoding(*args, **kwargs):
        raise AssertionError("a cached image was decoded again")

    monkeypatch.setattr(pipeline, "read_rgb", no_decoding)
    second = build().landmarks(paths)
    second_crops = build().faces(paths, CropSpec(150)).crops
    assert len(calls) == 3
    assert [r.status for r in second] == ["ok", "no_face"]
    np.testing.assert_array_equal(second[0].landmarks, first[0].landmarks)
    np.testing.assert_array_equal(second_crops, first_crops)
    with pytest.raises(AssertionError, match="decoded again"):
        build().faces(paths, CropSpec(96))  # a new crop size is a cache miss


def test_cache_key_changes_with_the_preprocessing_config(stages):
    base = Preprocessor(*stages, progress=False)
    assert base.config_hash == Preprocessor(*stages, n_workers=1, progress=False).config_hash
    assert base.config_hash != Preprocessor(*stages, detect_max_side=800).config_hash
    assert base.config_hash != Preprocessor(*stages, no_face="center_crop").config_hash


# ------------------------------------------------------------------------ backends


def test_fan_offline_fails_with_the_weight_files_and_the_folder_to_put_them_in(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    path = save(astronaut(), tmp_path / "a.png")
    preprocessor = Preprocessor(FanDetector(), FanLandmarker(), n_workers=1, progress=False)
    with pytest.raises(ModelUnavailableError) as raised:
        preprocessor.landmarks([path])
    message = str(raised.value)
    assert "2DFAN4-11f355bf06.pth.tar" in message and "s3fd-619a316812.pth" in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in message
    assert "preprocess=dlib" in message


class FakeFan:
    """Stands in for face_alignment.FaceAlignment: returns fixed landmarks, records the boxes it got."""

    def __init__(self, landmarks: np.ndarray):
        self.landmarks, self.boxes = landmarks, []

    def get_landmarks_from_image(self, image, detected_faces=None):
        self.boxes.append(detected_faces)
        return [np.hstack([self.landmarks, np.zeros((68, 1), np.float32)])]  # like 3-D output: x, y, z


def test_fan_landmarks_flow_into_the_alignment(stages, tmp_path):
    angle = np.radians(10)
    rotation = 110 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    unit = np.nan_to_num(template_landmarks("dlib"), nan=0.5)
    injected = (unit @ rotation.T + [170, 80]).astype(np.float32)
    fan = FakeFan(injected)
    preprocessor = Preprocessor(stages[0], FanLandmarker(model=fan), n_workers=1, progress=False)
    path = save(astronaut(), tmp_path / "a.png")
    (result,) = preprocessor.landmarks([path])
    assert result.status == "ok"
    np.testing.assert_array_equal(result.landmarks, injected)
    np.testing.assert_allclose(fan.boxes[0][0], result.box)
    crops = preprocessor.faces([path]).crops
    matrix = alignment_matrix(injected, 150, "dlib", 0.25)
    np.testing.assert_array_equal(crops[0], warp(astronaut(), matrix, 150))
    indices, targets = template_points("dlib", 150, 0.25)
    placed = transform_points(injected, chip_matrix(matrix, 150))[indices]
    assert np.abs(placed - targets).max() < 1.0


def test_none_backend_resizes_already_aligned_images_and_still_reports_bad_files(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    good = save(image, tmp_path / "aligned.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    preprocessor = Preprocessor(n_workers=1, progress=False)
    assert isinstance(preprocessor.aligner, ResizeAligner)
    results = preprocessor.landmarks([good, str(bad)])
    assert [r.status for r in results] == ["ok", "error"] and results[0].landmarks is None
    faces = preprocessor.faces([good, str(bad)], CropSpec(64))
    crops, kept = faces.crops, list(faces.kept)
    np.testing.assert_array_equal(crops[0], center_square_resize(image, 64))
    assert [r.path for r in kept] == [good]


@pytest.mark.parametrize(
    "backend, detector, landmarker, aligner",
    [
        ("dlib", DlibHogDetector, DlibLandmarker, SimilarityAligner),
        ("fan", FanDetector, FanLandmarker, SimilarityAligner),
        ("none", type(None), type(None), ResizeAligner),
    ],
)
def test_hydra_preprocess_configs_compose_the_stages(tmp_path, backend, detector, landmarker, aligner):
    from hydra.utils import instantiate

    cfg = compose_train(tmp_path, f"preprocess={backend}", cache_dir=tmp_path / "cache")
    preprocessor = instantiate(cfg.preprocess)
    assert isinstance(preprocessor, Preprocessor)
    assert isinstance(preprocessor.detector, detector) and isinstance(preprocessor.landmarker, landmarker)
    assert isinstance(preprocessor.aligner, aligner)
    assert preprocessor.cache_dir == str(tmp_path / "cache")


# ------------------------------------------------------------------------ report and QA grid


def test_report_has_one_row_per_image_with_the_documented_columns(make, tmp_path):
    paths = [save(astronaut(), tmp_path / "a.png"), save(coffee(), tmp_path / "b.png")]
    report = make().report(make().landmarks(paths))
    assert list(report.columns[:6]) == ["path", "status", "n_faces", "det_score", "fallback", "reason"]
    assert list(report.columns) == REPORT_COLUMNS
    assert list(report["path"]) == paths and list(report["status"]) == ["ok", "no_face"]
    assert report.loc[0, "width"] == 512 and report.loc[0, "det_score"] > 0


def test_qa_grid_draws_flagged_faces_first_and_writes_a_png(make, tmp_path):
    paths = [save(astronaut(), tmp_path / "a.png"), save(coffee(), tmp_path / "b.png")]
    preprocessor = make(no_face="center_crop")
    grid = preprocessor.qa_grid(paths, tmp_path / "qa" / "grid.png", n=4, tile=96)
    assert grid.dtype == np.uint8 and grid.ndim == 3 and grid.shape[1] == 2 * 96
    written = cv2.cvtColor(cv2.imread(str(tmp_path / "qa" / "grid.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(written, grid)
    assert tuple(grid[0, 0]) == (255, 64, 64)  # the centre-crop tile comes first, framed in red
    green = (grid[:96, 96:, 1] == 255) & (grid[:96, 96:, 0] == 0)
    assert green.sum() > 68  # landmark dots on the face tile


# ------------------------------------------------------------------------ slow: processes, real faces, CLI


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_worker_processes_give_the_same_results_as_one_process(stages, tmp_path):
    paths = [save(astronaut(), tmp_path / "a.png"), save(coffee(), tmp_path / "b.png"),
             save(np.ascontiguousarray(astronaut()[:, ::-1]), tmp_path / "c.png")]  # fmt: skip
    serial = Preprocessor(*stages, n_workers=1, progress=False).landmarks(paths)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(2)  # the parent's OpenCV thread pool is busy before the fork: workers must not hang
    big = np.zeros((2000, 2000, 3), dtype=np.uint8)
    cv2.resize(cv2.cvtColor(big, cv2.COLOR_RGB2GRAY), (500, 500), interpolation=cv2.INTER_AREA)
    try:
        parallel = Preprocessor(DlibHogDetector(), DlibLandmarker(), n_workers=2, progress=False).landmarks(paths)
    finally:
        cv2.setNumThreads(threads)
    assert [r.path for r in parallel] == paths
    for one, many in zip(serial, parallel, strict=True):
        assert one.status == many.status
        if one.landmarks is not None:
            np.testing.assert_array_equal(one.landmarks, many.landmarks)


@pytest.mark.slow
def test_london_faces_are_aligned_exactly_like_dlib_get_face_chip(make, london_dir, tmp_path):
    import dlib

    paths = [str(london_dir / "neutral" / "001_03.jpg"), str(london_dir / "smiling" / "044_08.jpg")]
    preprocessor = make(cache_dir=tmp_path / "cache")
    results = preprocessor.landmarks(paths)
    assert [r.status for r in results] == ["ok", "ok"]
    faces = preprocessor.faces(paths)
    crops, kept = faces.crops, list(faces.kept)
    from facediag.core.imageio import read_rgb

    for crop, result in zip(crops, kept, strict=True):
        x0, y0, x1, y1 = (round(v) for v in result.box)
        shape = dlib.full_object_detection(
            dlib.rectangle(x0, y0, x1 - 1, y1 - 1), [dlib.point(int(x), int(y)) for x, y in result.landmarks]
        )
        np.testing.assert_array_equal(crop, dlib.get_face_chip(read_rgb(result.path), shape, 150, 0.25))


@pytest.mark.slow
def test_cli_writes_the_report_and_qa_grid_into_the_run_dir(tmp_path):
    root = tmp_path / "faces"
    save(astronaut(), root / "person" / "astronaut.png")
    save(coffee(), root / "object" / "coffee.png")
    (root / "object" / "broken.jpg").write_bytes(b"")
    run_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "facediag.preprocess", "data=folder", f"data.root={root}", "preprocess=dlib",
        f"hydra.run.dir={run_dir}", f"paths.cache_dir={tmp_path / 'cache'}", "preprocess.progress=false",
        "preprocess.n_workers=1",
    ]  # fmt: skip
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ok 1, no_face 1, error 1" in done.stdout
    import pandas as pd

    report = pd.read_csv(run_dir / "preprocess_report.csv")
    assert sorted(report["status"]) == ["error", "no_face", "ok"]
    assert (run_dir / "qa_grid.png").stat().st_size > 0


def test_face_result_round_trips_through_its_cache_record():
    result = FaceResult(
        path="x.jpg", status="ok", n_faces=2, det_score=1.5, fallback="upsampled",
        landmarks=np.arange(136, dtype=np.float32).reshape(68, 2), box=(1.0, 2.0, 3.0, 4.0),
        image_size=(640, 480), sha256="ab",
    )  # fmt: skip
    back = FaceResult.from_record(result.to_record(), "y.jpg")
    assert back.path == "y.jpg" and back.n_faces == 2 and back.fallback == "upsampled"
    np.testing.assert_array_equal(back.landmarks, result.landmarks)
    assert back.box == result.box and back.image_size == result.image_size


def test_dlib_models_load_once_per_thread_and_are_shared_by_every_pipeline_in_it():
    import threading

    first, second = DlibLandmarker(), DlibLandmarker()
    assert first.model is second.model and DlibHogDetector().model is DlibHogDetector().model
    assert DlibLandmarker("shape_predictor_5_face_landmarks.dat").model is not first.model  # another file
    elsewhere: list[object] = []
    thread = threading.Thread(target=lambda: elsewhere.append(DlibHogDetector().model))
    thread.start()
    thread.join()
    assert elsewhere[0] is not DlibHogDetector().model  # dlib's detector is not shared across threads


def test_another_view_of_the_photos_is_made_once_and_keyed_by_the_harmonisation(tmp_path):
    made: list[str] = []

    def make(result: FaceResult) -> np.ndarray:
        made.append(result.sha256)
        return np.full((4, 4, 3), len(made), np.uint8)

    results = [FaceResult(path=f"{name}.png", status="ok", sha256=name * 64) for name in "ab"]
    plain = Preprocessor(cache_dir=tmp_path, progress=False)
    first = plain.cached_views(results, "corners", make, harmonised=True)
    again = plain.cached_views(results, "corners", make, harmonised=True)
    assert made == ["a" * 64, "b" * 64] and np.array_equal(first, again)  # the second call reads the cache
    harmonised = Preprocessor(cache_dir=tmp_path, progress=False, harmonise=["jpeg"])
    harmonised.cached_views(results, "corners", make, harmonised=True)
    assert len(made) == 4  # other harmonisation, another view
    harmonised.cached_views(results, "corners", make, harmonised=False)
    assert len(made) == 4  # a view the harmonisation does not touch is shared
    no_digest = [FaceResult(path="c.png", status="ok")]
    plain.cached_views(no_digest, "corners", make, harmonised=True)
    plain.cached_views(no_digest, "corners", make, harmonised=True)
    assert len(made) == 6  # a photo without a digest is made every time
