"""MediaPipe's face mesh as a landmarker (facediag.preprocess.face_mesh): the model file's verified download out of
the wheel, the region it looks at, the 68-point layout in the crop frame, and the clear errors."""

from __future__ import annotations

import hashlib
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from facediag.core.crop import CropSpec
from facediag.preprocess import (
    DlibHogDetector,
    DlibLandmarker,
    FaceResult,
    ModelUnavailableError,
    Preprocessor,
    face_mesh,
)
from facediag.preprocess.align import transform_points
from facediag.preprocess.face_mesh import (
    IBUG_68,
    MODEL_FILE,
    WHEEL_MEMBER,
    FaceMesh,
    mesh_landmarks,
    mesh_model_path,
    region,
    region_matrix,
)
from facediag.strategies.fused import landmark_crop

MODEL = b"not a real tflite, but the bytes the test pins"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wheel(path: Path, member: str = WHEEL_MEMBER, data: bytes = MODEL) -> str:
    """A zip shaped like the mediapipe wheel at ``path``; returns its sha256."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, data)
    return sha(path.read_bytes())


def test_the_model_is_taken_out_of_the_checked_wheel_and_the_wheel_is_not_kept(http_server, tmp_path):
    www, base = http_server
    wheel_sha = wheel(www / "mediapipe.whl")
    folder = tmp_path / "weights"
    path = mesh_model_path(folder, url=base + "mediapipe.whl", wheel_sha256=wheel_sha, model_sha256=sha(MODEL))
    assert path == folder / MODEL_FILE and path.read_bytes() == MODEL
    assert sorted(p.name for p in folder.iterdir()) == [MODEL_FILE]
    # found again without a download: the server's file may go
    (www / "mediapipe.whl").unlink()
    assert mesh_model_path(folder, url=base + "mediapipe.whl", wheel_sha256=wheel_sha, model_sha256=sha(MODEL)) == path


def test_a_wheel_with_another_checksum_leaves_nothing_and_says_what_to_put_where(tmp_path):
    wheel(tmp_path / "mediapipe.whl")
    folder = tmp_path / "weights"
    with pytest.raises(ModelUnavailableError, match="download failed") as err:
        mesh_model_path(folder, url=(tmp_path / "mediapipe.whl").as_uri(), wheel_sha256="0" * 64,
                        model_sha256=sha(MODEL))
    assert str(folder) in str(err.value) and MODEL_FILE in str(err.value) and WHEEL_MEMBER in str(err.value)
    assert not folder.exists() or not any(folder.iterdir())


def test_a_wheel_without_the_model_is_refused(tmp_path):
    wheel_sha = wheel(tmp_path / "mediapipe.whl", member="mediapipe/other.tflite")
    folder = tmp_path / "weights"
    with pytest.raises(ModelUnavailableError, match="download failed"):
        mesh_model_path(folder, url=(tmp_path / "mediapipe.whl").as_uri(), wheel_sha256=wheel_sha,
                        model_sha256=sha(MODEL))
    assert not (folder / MODEL_FILE).exists()


def test_offline_the_error_names_the_file_its_source_and_the_folder(tmp_path):
    with pytest.raises(ModelUnavailableError, match="downloads are switched off") as err:
        mesh_model_path(tmp_path, download=False)
    message = str(err.value)
    assert MODEL_FILE in message and face_mesh.WHEEL_URL in message and str(tmp_path) in message


def test_a_model_file_with_other_bytes_is_refused(tmp_path):
    (tmp_path / MODEL_FILE).write_bytes(b"tampered")
    with pytest.raises(ModelUnavailableError, match="does not match"):
        mesh_model_path(tmp_path, download=False, model_sha256=sha(MODEL))


def test_without_the_tflite_runtime_the_error_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(ModelUnavailableError, match=r"facediag\[mesh\]"):
        FaceMesh(tmp_path)._load()


def test_the_region_is_the_level_square_around_the_points_grown_by_half():
    angle = 0.3
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    upright = np.array([[0.0, 0.0], [40.0, 0.0], [20.0, 30.0], [20.0, -10.0]])  # eye corners level, 40 wide
    points = upright @ turn.T + [100.0, 50.0]
    centre, side, found = region(points, (0, 1))
    assert found == pytest.approx(angle)
    assert side == pytest.approx(1.5 * 40.0)
    assert centre == pytest.approx(np.array([20.0, 10.0]) @ turn.T + [100.0, 50.0])
    matrix = region_matrix(centre, side, found, size=192)
    inside = transform_points(points, _inverse(matrix))
    assert inside[0, 1] == pytest.approx(inside[1, 1])  # the eye corners lie level in the model's input
    assert transform_points(np.array([[96.0, 96.0]]), matrix)[0] == pytest.approx(centre)


def _inverse(matrix: np.ndarray) -> np.ndarray:
    full = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))
    return full[:2]


def test_the_68_point_layout_takes_each_mesh_vertex_once_with_both_eyes_and_mouth_corners():
    assert IBUG_68.shape == (68,) and len(set(IBUG_68.tolist())) == 68 and IBUG_68.max() < 468
    assert (IBUG_68[[36, 39, 42, 45]] == [33, 133, 362, 263]).all()
    assert (IBUG_68[[48, 54, 8]] == [61, 291, 152]).all()


class FakeMesh(FaceMesh):
    """A mesh whose vertex i sits at (i, 2 i) + the first dlib point: counts its calls."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def landmarks(self, image: np.ndarray, points68: np.ndarray) -> np.ndarray:
        self.calls += 1
        return (np.stack([np.arange(468), 2 * np.arange(468)], axis=1) + points68[0]).astype(np.float32)


def test_mesh_landmarks_come_in_the_68_point_layout_nan_without_a_face_and_are_cached(tmp_path):
    from PIL import Image

    photo = tmp_path / "face.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(photo)
    points = np.zeros((68, 2), dtype=np.float32) + 3.0
    results = [FaceResult(path=str(photo), status="ok", image_size=(8, 8), landmarks=points, sha256="a" * 64),
               FaceResult(path=str(photo), status="center_crop", image_size=(8, 8), sha256="b" * 64)]
    pre = Preprocessor(DlibHogDetector(), DlibLandmarker(), cache_dir=tmp_path / "cache", progress=False)
    mesh = FakeMesh()
    found = mesh_landmarks(pre, results, mesh)
    expected = np.stack([IBUG_68, 2 * IBUG_68], axis=1) + 3.0
    assert found[0] == pytest.approx(expected) and np.isnan(found[1]).all()
    assert mesh_landmarks(pre, results, FakeMesh())[0] == pytest.approx(expected)  # from the cache
    assert mesh.calls == 1


def test_preprocessor_gives_mesh_landmarks_in_crop_pixels_and_refuses_an_unknown_landmarker(monkeypatch, tmp_path):
    pre = Preprocessor(DlibHogDetector(), DlibLandmarker(), cache_dir=tmp_path, progress=False)
    points = np.random.default_rng(0).uniform(40, 60, (68, 2)).astype(np.float32)
    points[36:42] -= [10, 0]
    points[42:48] += [10, 0]
    result = FaceResult(path="x.png", status="ok", image_size=(100, 100), landmarks=points, sha256="c" * 64)
    moved = points + 1.0
    monkeypatch.setattr(face_mesh, "mesh_landmarks", lambda preprocessor, results: moved[None])
    crop = CropSpec(150, "dlib", 0.25)
    found = pre.crop_landmarks([result], crop, landmarker="mesh")
    assert found[0] == pytest.approx(transform_points(moved, pre.aligner.crop_matrix(result, crop)), abs=1e-4)
    with pytest.raises(ValueError, match="unknown landmarker 'fan'"):
        pre.crop_landmarks([result], crop, landmarker="fan")


def test_a_fused_landmark_source_takes_mesh_as_its_landmarker_and_nothing_else():
    assert landmark_crop({"features": "face_anthropometry", "landmarker": "mesh"}) == CropSpec.of({})
    with pytest.raises(ValueError, match="landmarker must be mesh"):
        landmark_crop({"features": "face_anthropometry", "landmarker": "fan"})


def test_the_real_mesh_finds_a_london_face_where_dlib_does(london_dir):
    """With the extra installed and the model fetched: the mesh's 68 points on a real photo lie near dlib's."""
    pytest.importorskip("ai_edge_litert")
    # the session's cache is a fresh folder: the user's own weights folder may hold the model (read only)
    folders = [p for p in (None, Path.home() / ".cache" / "facediag" / "weights")
               if (p is None and _has_model(None)) or (p is not None and (p / MODEL_FILE).is_file())]
    if not folders:
        pytest.skip(f"{MODEL_FILE} not fetched (python -c 'from facediag.preprocess.face_mesh import "
                    "mesh_model_path; mesh_model_path()')")
    import cv2

    from facediag.core.imageio import read_rgb

    photo = read_rgb(sorted((london_dir / "neutral").glob("*.jpg"))[0])
    photo = cv2.resize(photo, (photo.shape[1] // 4, photo.shape[0] // 4), interpolation=cv2.INTER_AREA)  # fast
    pre = Preprocessor(DlibHogDetector(), DlibLandmarker(), cache_dir=None, progress=False)
    dlib = pre.analyse(photo).landmarks
    found = FaceMesh(folders[0], download=False).landmarks(photo, dlib)[IBUG_68]
    inter_ocular = np.linalg.norm(dlib[36:42].mean(axis=0) - dlib[42:48].mean(axis=0))
    gap = np.linalg.norm(found - dlib, axis=1) / inter_ocular
    assert np.median(gap) < 0.08 and gap[36:48].max() < 0.15


def _has_model(folder: Path | None) -> bool:
    try:
        mesh_model_path(folder, download=False)
    except ModelUnavailableError:
        return False
    return True


class NoMesh:
    """A preprocessor stand-in whose cached landmarks are real dlib-like points; the mesh must never be asked for."""

    def __init__(self, results):
        self.results = results

    def landmarks(self, split):
        return self.results

    def crop_landmarks(self, *args, **kwargs):
        raise AssertionError("a control must not measure the photo's landmarks")


def test_a_control_gives_the_mean_face_whatever_landmarker_is_asked_for():
    import pandas as pd

    from facediag.apply.control_views import ControlData

    points = np.full((68, 2), 5.0, dtype=np.float32)
    results = [FaceResult(path=f"{i}.png", status="ok", image_size=(10, 10), landmarks=points) for i in range(2)]
    split = pd.DataFrame({"path": ["0.png", "1.png"], "role": ["train", "test"], "subject": ["a", "b"]})
    control = ControlData("face_blind", NoMesh(results), split)
    crop = CropSpec(150, "dlib", 0.25)
    with_mesh = control.faces(crop, crops=False, landmarks=True, landmarker="mesh").landmarks
    assert with_mesh == pytest.approx(control.faces(crop, crops=False, landmarks=True).landmarks, nan_ok=True)
    assert with_mesh[0] == pytest.approx(with_mesh[1], nan_ok=True)  # one mean face for everyone


def test_a_mesh_source_asks_for_the_mesh_and_is_named_apart_from_dlibs(monkeypatch):
    import pandas as pd

    from facediag.preprocess.faces import Faces
    from facediag.strategies.fused import FusedDTL2

    asked = []

    def faces(crop, crops=True, landmarks=False, **options):
        asked.append(options)
        rng = np.random.default_rng(len(asked))
        points = rng.uniform(20, 130, (3, 68, 2)).astype(np.float32)
        rows = pd.DataFrame({"path": ["a", "b", "c"]})
        kept = tuple(FaceResult(path=p, status="ok", image_size=(9, 9)) for p in rows["path"])
        return Faces(crop, rows, kept, None, points, kept)

    job = type("FakeJob", (), {"faces": staticmethod(faces)})()
    strategy = FusedDTL2(sources=[{"features": "face_anthropometry"},
                                  {"features": "face_anthropometry", "landmarker": "mesh"}])
    _, dlib, dlib_info = strategy.source_features(job, strategy.sources[0])
    _, mesh, mesh_info = strategy.source_features(job, strategy.sources[1])
    assert asked == [{}, {"landmarker": "mesh"}]
    assert "name" not in dlib_info and mesh_info["name"] == "face_anthropometry@mesh"
    assert mesh_info["landmarker"] == "mesh" and mesh.shape == dlib.shape == (3, 20)
