"""What a control sees (the views behind facediag.training.controls): the same photos shown without the face.

- ``face_blind``: each photo aligned on its two eye centres only (an exact similarity onto the template's eye
  positions, so a smile, an open mouth or a longer face cannot move or scale the crop) and harmonised as the
  method's crops are (``preprocess.harmonise``, :class:`EyeAligner`), then one fixed face region
  filled with one colour: the union of the training photos' 68-landmark hulls in that frame, grown by
  :data:`DILATE` of its width (a region shaped by each photo's own landmarks would tell a wide mouth). Hair, ears,
  clothing, background and the photo's grain stay.
- ``capture_only``: the four corners of the whole photo as captured (each :data:`CORNER` of its shorter side),
  tiled 2 x 2 into a crop: background and processing alone, a property of the data set (harmonisation, which the
  method's crops may have, does not apply: it says whether capture tells the classes, not whether the method sees
  it).

A landmark-features source (facial geometry) is the face itself: in a control every photo gets the template's mean
face. :class:`ControlData` serves a training job's photos (:mod:`facediag.training.controls` trains on them);
:class:`SiteControl` serves photos of another site to a control a run kept (external validation), hiding the face
region the control was trained with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from facediag.core.crop import CropSpec
from facediag.preprocess.faces import Faces
from facediag.preprocess.harmonise import face_region, filled
from facediag.scoring.controls import CONTROLS

DILATE = 0.15  # the face region grown by this share of its width
CORNER = 0.25  # a corner patch's side, as a share of the photo's shorter side


def eye_matrix(landmarks: np.ndarray, size: int, template: str, padding: float) -> np.ndarray:
    """(2, 3) similarity taking the photo's two eye centres exactly onto the template's in a ``size`` crop."""
    from facediag.preprocess.align import invert_affine, template_landmarks, umeyama

    unit = template_landmarks(template)
    target = (padding + np.stack([unit[36:42].mean(0), unit[42:48].mean(0)])) / (2 * padding + 1) * size
    eyes = np.stack([landmarks[36:42].mean(0), landmarks[42:48].mean(0)]).astype(np.float64)
    return invert_affine(umeyama(target, eyes))


class EyeAligner:
    """The preprocessing aligner's contract (``crop``, ``crop_matrix``) on the two eye centres only, so that the
    run's capture harmonisation (``preprocess.harmonise``) wraps a control's crops as it wraps the method's."""

    def crop(self, image: np.ndarray, result: Any, crop: CropSpec) -> np.ndarray:
        from facediag.preprocess.align import warp

        return warp(image, eye_matrix(result.landmarks, *crop), crop.size)

    def crop_matrix(self, result: Any, crop: CropSpec) -> np.ndarray:
        from facediag.preprocess.align import chip_matrix

        return chip_matrix(eye_matrix(result.landmarks, *crop), crop.size)

    def describe(self) -> dict[str, Any]:
        return {"aligner": "eyes"}


def eye_landmarks(results: Sequence[Any], crop: CropSpec) -> np.ndarray:
    """(N, 68, 2) float32 landmarks of ``results`` in eye-aligned ``crop`` pixels (:class:`EyeAligner`)."""
    from facediag.preprocess.align import transform_points

    aligner = EyeAligner()
    return np.stack([transform_points(r.landmarks, aligner.crop_matrix(r, crop)) for r in results]).astype(np.float32)


def eye_aligned(results: Sequence[Any], crop: CropSpec, preprocessor: Any) -> tuple[np.ndarray, np.ndarray]:
    """(crops (N, size, size, 3) uint8, landmarks (N, 68, 2) in crop pixels) of results that have landmarks,
    harmonised as ``preprocessor`` harmonises its crops (``preprocess.harmonise``) and kept in its crop cache. The
    landmarks do not depend on a photo step's resampling: the eyes land on the same crop pixels at any scale."""
    from facediag.core.imageio import read_rgb

    aligner, harmoniser = EyeAligner(), preprocessor.harmoniser
    key = f"eyes-{crop.template}-{crop.size}-p{crop.padding:g}"
    crops = preprocessor.cached_views(results, key, lambda r: harmoniser.crop(aligner, read_rgb(r.path), r, crop),
                                      harmonised=True)
    return crops, eye_landmarks(results, crop)


def corners(path: str, size: int) -> np.ndarray:
    """The four corners of the photo at ``path`` (each :data:`CORNER` of its shorter side), tiled 2 x 2."""
    import cv2

    from facediag.core.imageio import read_rgb

    image = read_rgb(path)
    side = max(2, int(round(CORNER * min(image.shape[:2]))))
    half = size // 2
    patches = [image[:side, :side], image[:side, -side:], image[-side:, :side], image[-side:, -side:]]
    small = [cv2.resize(np.ascontiguousarray(p), (half, half), interpolation=cv2.INTER_AREA) for p in patches]
    tiled = np.vstack([np.hstack(small[:2]), np.hstack(small[2:])])
    return cv2.resize(tiled, (size, size), interpolation=cv2.INTER_NEAREST) if tiled.shape[0] != size else tiled


class ControlData:
    """The faces of a control: ``faces`` as the training job's (:class:`~facediag.preprocess.faces.Faces`)."""

    def __init__(self, name: str, preprocessor: Any, split: pd.DataFrame):
        if name not in CONTROLS:
            raise ValueError(f"unknown control {name!r}; choose among {CONTROLS}")
        self.name, self.preprocessor, self.split = name, preprocessor, split
        # a centre-crop fallback has no landmarks to align on: the control keeps the photos with a face
        results = preprocessor.landmarks(split)
        with_face = [i for i, r in enumerate(results) if r.landmarks is not None]
        self.results = tuple(results[i] for i in with_face)
        self.rows = split.reset_index(drop=True).iloc[with_face].reset_index(drop=True)

    def faces(self, crop: CropSpec, *, crops: bool = True, landmarks: bool = False, landmarker: str | None = None
              ) -> Faces:
        """The control's view of the faces with landmarks: its ``crops``, and as ``landmarks`` the template's mean
        face for every photo, whichever ``landmarker`` is asked for (a control's landmarks say nothing about the
        person)."""
        pixels = self._crops(crop) if crops else None
        return Faces(crop, self.rows, self.results, pixels, self._mean_faces(crop) if landmarks else None,
                     self.results)

    def _crops(self, crop: CropSpec) -> np.ndarray:
        if self.name == "capture_only":
            return self.preprocessor.cached_views(self.results, f"corners{CORNER:g}-{crop.size}",
                                                  lambda r: corners(r.path, crop.size), harmonised=False)
        crops, points = eye_aligned(self.results, crop, self.preprocessor)
        return filled(crops, self.hidden_region(crop, points))

    def hidden_region(self, crop: CropSpec, points: np.ndarray) -> np.ndarray:
        """The one (size, size) face region every face-blind crop hides: the union of the training and validation
        rows' 68-landmark hulls (``points``: every row's, in eye-aligned ``crop`` pixels), grown by :data:`DILATE`."""
        training = self.rows["role"].isin(["train", "val"]).to_numpy()
        return face_region(points[training], crop.size, dilate=DILATE)

    def _mean_faces(self, crop: CropSpec) -> np.ndarray:
        from facediag.preprocess.align import template_landmarks

        unit = np.nan_to_num(template_landmarks(crop.template))
        mean_face = ((crop.padding + unit) / (2 * crop.padding + 1) * crop.size).astype(np.float32)
        return np.repeat(mean_face[None], len(self.rows), axis=0)


class SiteControl(ControlData):
    """A control a run kept, shown the photos of another site (``site``: their rows, all scored as role ``test``):
    face-blind crops hide the face region the control was trained with, the union of the run's own training and
    validation photos' hulls (``training``: their split rows; only their cached landmarks are read, not their
    pixels). :meth:`view` stands in for the run's preprocessor in ``Predictor.score``."""

    def __init__(self, name: str, preprocessor: Any, site: pd.DataFrame, training: pd.DataFrame):
        super().__init__(name, preprocessor, site.assign(role="test"))
        trained = preprocessor.landmarks(training) if name == "face_blind" else []
        self.training = tuple(r for r in trained if r.landmarks is not None)

    def hidden_region(self, crop: CropSpec, points: np.ndarray) -> np.ndarray:
        if not self.training:
            raise ValueError("a face-blind control on another site needs the landmarks of the run's training photos")
        return face_region(eye_landmarks(self.training, crop), crop.size, dilate=DILATE)

    def view(self) -> SiteView:
        """This control's faces where a Predictor expects the run's preprocessor (``Predictor.score``)."""
        return SiteView(self)


class SiteView:
    """The preprocessor's ``faces(images, crop, *, crops, landmarks)`` answered by a :class:`SiteControl`: its faces
    (the site's rows with landmarks, in order), whatever ``images`` names."""

    def __init__(self, control: SiteControl):
        self.control = control

    def faces(self, images: Any, crop: CropSpec, *, crops: bool = True, landmarks: bool = False,
              landmarker: str | None = None) -> Faces:
        return self.control.faces(crop, crops=crops, landmarks=landmarks)
