"""Capture harmonisation (``preprocess.harmonise``): steps that make every face crop look as if it had been taken
and saved one way, so that a model cannot tell a class by its camera, resolution, sharpening, noise, compression or
background (on London, file size alone gives 0.985 on expression; see ``benchmarks/shortcut.py``).

The steps, given as a list in ``preprocess.harmonise`` (a name, or ``{step: name, <setting>: value}``):

- ``resample`` (``px``: 32): before alignment, the photo is shrunk (Lanczos, antialiased) so that its eye centres are
  ``px`` apart; the crop is then made from that copy. Every face is seen at one resolution, whatever the camera; a
  photo whose eyes are already closer is left as it is.
- ``background`` (``dilate``: 0.1): after alignment, every pixel outside the 68-landmark hull grown by ``dilate`` x its
  width is filled with ImageNet's mean colour: background, hair and clothing are gone.
- ``blur`` (``sigma``: 1.0): a Gaussian blur of the crop (``sigma`` in crop pixels): fine grain and sharpening go.
- ``noise`` (``sigma``: 2.0): Gaussian noise topped up to ``sigma`` grey levels (the crop's own noise, estimated by
  ``skimage.restoration.estimate_sigma``, counts; a noisier crop gets none), seeded by the crop's pixels.
- ``jpeg`` (``quality``: 75): one JPEG round trip at that quality: every crop carries the same compression.

Photo steps (``resample``) run before alignment and must come first in the list; the crop steps run in list order.
A photo without landmarks (``no_face=center_crop`` fallbacks, ``preprocess=none``) gets the crop steps that need none
(``blur``, ``noise``, ``jpeg``). The settings are part of the crop cache key: harmonised crops are cached apart.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import cv2
import numpy as np

from facediag.preprocess.align import region_mask, transform_points

if TYPE_CHECKING:
    from facediag.core.crop import CropSpec
    from facediag.preprocess.aligners import Aligner
    from facediag.preprocess.face_results import FaceResult

#: the fill of the background: ImageNet's mean colour (0-255), as the audit's face-blind check fills its region
FILL_RGB = (124, 116, 104)


def eye_distance(landmarks: np.ndarray) -> float:
    """Distance in pixels between the eye centres (mean of landmarks 36-41 and of 42-47)."""
    return float(np.linalg.norm(landmarks[36:42].mean(axis=0) - landmarks[42:48].mean(axis=0)))


@dataclass(frozen=True)
class Resample:
    """The photo shrunk so that the eyes are ``px`` apart (never enlarged); landmarks follow."""

    px: float = 32.0
    interpolation: str = "lanczos"  # lanczos: Pillow's, its kernel widened with the shrink (no aliasing); area
    name: ClassVar[str] = "resample"
    on_photo: ClassVar[bool] = True

    def photo(self, image: np.ndarray, result: FaceResult) -> tuple[np.ndarray, FaceResult]:
        assert result.landmarks is not None
        scale = self.px / eye_distance(result.landmarks)
        if scale >= 1:
            return image, result
        height, width = image.shape[:2]
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        if self.interpolation == "lanczos":
            from PIL import Image

            small = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))
        elif self.interpolation == "area":  # a box filter: detail just finer than the new pixels aliases through
            small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        else:
            raise ValueError(f"resample: interpolation is lanczos or area, not {self.interpolation!r}")
        factors = np.array([size[0] / width, size[1] / height])
        landmarks = ((result.landmarks + 0.5) * factors - 0.5).astype(np.float32)  # pixel centres stay centres
        box = None if result.box is None else tuple(float(v) for v in np.multiply(result.box, np.tile(factors, 2)))
        return small, dataclasses.replace(result, landmarks=landmarks, box=box, image_size=size)


@dataclass(frozen=True)
class Background:
    """Everything outside the landmark hull grown by ``dilate`` x its width filled with :data:`FILL_RGB`."""

    dilate: float = 0.1
    name: ClassVar[str] = "background"
    on_photo: ClassVar[bool] = False

    def crop(self, crop: np.ndarray, points: np.ndarray | None) -> np.ndarray:
        if points is None:
            return crop
        face = face_mask(points, crop.shape[0], self.dilate)
        out = crop.copy()
        out[~face] = np.array(FILL_RGB, dtype=np.uint8)
        return out


def face_mask(points: np.ndarray, size: int, dilate: float) -> np.ndarray:
    """(size, size) bool: the convex hull of all 68 landmarks grown by ``dilate`` x its width (the audit's region)."""
    return region_mask(np.asarray(points, dtype=np.float64), size, indices=range(68), dilate=dilate)


def face_region(points: np.ndarray, size: int, dilate: float = 0.1) -> np.ndarray:
    """One (size, size) mask for every photo: the union of all photos' 68-landmark hulls (in crop pixels) grown by
    ``dilate`` x their width (:func:`face_mask` of each). Fixed, because a mask shaped by each photo's own landmarks
    tells a wide mouth."""
    return np.any([face_mask(p, size, dilate) for p in points], axis=0)


def filled(crops: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Copies of uint8 crops (N, H, W, 3) with ``mask`` filled with :data:`FILL_RGB`."""
    out = np.array(crops, copy=True)
    out[:, mask] = np.array(FILL_RGB, dtype=np.uint8)
    return out


@dataclass(frozen=True)
class Blur:
    """A Gaussian blur of ``sigma`` crop pixels."""

    sigma: float = 1.0
    name: ClassVar[str] = "blur"
    on_photo: ClassVar[bool] = False

    def crop(self, crop: np.ndarray, points: np.ndarray | None) -> np.ndarray:
        return cv2.GaussianBlur(np.ascontiguousarray(crop), (0, 0), self.sigma) if self.sigma > 0 else crop


@dataclass(frozen=True)
class Noise:
    """Gaussian noise topped up to ``sigma`` grey levels (estimated own noise counted), seeded by the pixels."""

    sigma: float = 2.0
    name: ClassVar[str] = "noise"
    on_photo: ClassVar[bool] = False

    def crop(self, crop: np.ndarray, points: np.ndarray | None) -> np.ndarray:
        from skimage.restoration import estimate_sigma

        own = float(estimate_sigma(crop, channel_axis=-1, average_sigmas=True))
        extra = float(np.sqrt(max(0.0, self.sigma**2 - own**2)))
        if extra == 0:
            return crop
        rng = np.random.default_rng(zlib.crc32(np.ascontiguousarray(crop).tobytes()))
        return np.clip(crop + rng.normal(0.0, extra, crop.shape), 0, 255).round().astype(np.uint8)


@dataclass(frozen=True)
class Jpeg:
    """One JPEG round trip at ``quality`` (OpenCV's libjpeg, 4:2:0 chroma)."""

    quality: int = 75
    name: ClassVar[str] = "jpeg"
    on_photo: ClassVar[bool] = False

    def crop(self, crop: np.ndarray, points: np.ndarray | None) -> np.ndarray:
        ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, int(self.quality)])  # fmt: skip
        if not ok:
            raise ValueError("JPEG encoding failed")
        return cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


STEPS: dict[str, type] = {step.name: step for step in (Resample, Background, Blur, Noise, Jpeg)}
#: steps that need the face's landmarks
NEEDS_LANDMARKS = ("resample", "background")


def make_step(spec: str | Mapping[str, Any]) -> Any:
    """A step from its name or a ``{step: name, <setting>: value}`` mapping."""
    if isinstance(spec, str):
        name, settings = spec, {}
    else:
        settings = dict(spec)
        name = str(settings.pop("step", ""))
    if name not in STEPS:
        raise ValueError(f"unknown harmonise step {name!r}; choose from {sorted(STEPS)}")
    defaults = {f.name: f.default for f in dataclasses.fields(STEPS[name])}
    unknown = set(settings) - set(defaults)
    if unknown:
        raise ValueError(f"harmonise step {name!r} has no setting {sorted(unknown)}; it has {sorted(defaults)}")
    return STEPS[name](**{k: type(defaults[k])(v) for k, v in settings.items()})  # 32 and 32.0: one cache key


class Harmoniser:
    """The ``preprocess.harmonise`` steps around the aligner: photo steps, alignment, crop steps."""

    def __init__(self, steps: Sequence[str | Mapping[str, Any]] | None = None):
        self.steps = [make_step(spec) for spec in (steps or [])]
        on_photo = [step.on_photo for step in self.steps]
        if on_photo != sorted(on_photo, reverse=True):
            raise ValueError("harmonise: photo steps (resample) must come before the crop steps "
                             f"({[step.name for step in self.steps]})")  # fmt: skip

    def __bool__(self) -> bool:
        return bool(self.steps)

    @property
    def needs_landmarks(self) -> bool:
        return any(step.name in NEEDS_LANDMARKS for step in self.steps)

    def describe(self) -> list[dict[str, Any]]:
        """The steps and their settings, in order (the crop cache key part)."""
        return [{"step": step.name, **dataclasses.asdict(step)} for step in self.steps]

    def crop(self, aligner: Aligner, image: np.ndarray, result: FaceResult, crop: CropSpec) -> np.ndarray:
        """The aligned ``crop`` of ``image`` for ``result``, harmonised."""
        landmarked = result.landmarks is not None
        for step in self.steps:
            if step.on_photo and landmarked:
                image, result = step.photo(image, result)
        pixels = aligner.crop(image, result, crop)
        points = None
        if landmarked and any(not step.on_photo for step in self.steps):
            points = transform_points(result.landmarks, aligner.crop_matrix(result, crop))
        for step in self.steps:
            if not step.on_photo:
                pixels = step.crop(pixels, points)
        return pixels
