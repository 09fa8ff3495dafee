"""Face detectors: small, picklable objects that load their model on first use.

A detector answers ``detect(image, upsample=False) -> list[Detection]`` on a uint8 RGB image;
boxes are in that image's pixel coordinates. Downscaling, the upsampled retry and the choice of
the largest face are the pipeline's job (``facediag.preprocess.pipeline``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np

from facediag.preprocess.landmark_weights import LazyModel, fan_weight_path


@dataclass(frozen=True)
class Detection:
    """A face box (x0, y0, x1, y1) in pixels and the detector's confidence."""

    box: tuple[float, float, float, float]
    score: float

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(x1 - x0, 0.0) * max(y1 - y0, 0.0)


class FaceDetector(Protocol):
    def detect(self, image: np.ndarray, upsample: bool = False) -> list[Detection]: ...

    def describe(self) -> dict[str, Any]: ...


class DlibHogDetector(LazyModel):
    """dlib's HOG + linear SVM frontal face detector (the paper's); works offline.

    ``threshold`` is the SVM margin a detection needs (dlib's default 0); ``det_score`` is that margin.
    ``grayscale`` runs HOG on the luminance: dlib takes the strongest of three colour gradients
    otherwise, which costs ~1.7x the time for the same boxes on photos like the London set.
    """

    share_by_fork = True

    def __init__(self, threshold: float = 0.0, grayscale: bool = True):
        self.threshold = float(threshold)
        self.grayscale = bool(grayscale)

    def _load(self) -> Any:
        import dlib

        return dlib.get_frontal_face_detector()

    def shared_key(self) -> tuple[Any, ...]:
        return ("dlib.get_frontal_face_detector",)

    def detect(self, image: np.ndarray, upsample: bool = False) -> list[Detection]:
        if self.grayscale and image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        rects, scores, _ = self.model.run(image, 1 if upsample else 0, self.threshold)
        return [
            Detection((float(r.left()), float(r.top()), float(r.right() + 1), float(r.bottom() + 1)), float(s))
            for r, s in zip(rects, scores, strict=True)
        ]

    def describe(self) -> dict[str, Any]:
        import dlib

        return {"name": "dlib_hog", "threshold": self.threshold, "grayscale": self.grayscale, "dlib": dlib.__version__}


class FanDetector(LazyModel):
    """face-alignment's S3FD detector (weights ``s3fd-619a316812.pth``, fetched on first use)."""

    def __init__(self, device: str = "cpu", threshold: float = 0.5, download: bool = True):
        self.device = device
        self.threshold = float(threshold)
        self.download = download

    def prepare(self) -> None:
        fan_weight_path("s3fd-619a316812.pth", download=self.download)

    def _load(self) -> Any:
        weights = fan_weight_path("s3fd-619a316812.pth", download=self.download)
        from face_alignment.detection.sfd.sfd_detector import SFDDetector

        return SFDDetector(device=self.device, path_to_detector=str(weights), filter_threshold=self.threshold)

    def detect(self, image: np.ndarray, upsample: bool = False) -> list[Detection]:
        factor = 2.0 if upsample else 1.0
        source = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR) if upsample else image
        boxes = self.model.detect_from_image(np.ascontiguousarray(source))  # RGB, as face-alignment expects
        return [
            Detection(tuple(float(v) / factor for v in box[:4]), float(box[4]))  # type: ignore[arg-type]
            for box in boxes
        ]

    def describe(self) -> dict[str, Any]:
        return {"name": "s3fd", "threshold": self.threshold, "weights": "s3fd-619a316812.pth"}
