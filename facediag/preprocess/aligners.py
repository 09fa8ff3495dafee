"""Aligners: turn an image and its FaceResult into a crop, and tell where the landmarks land in it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from facediag.preprocess.align import (
    alignment_matrix,
    center_square_resize,
    chip_matrix,
    resize_matrix,
    warp,
)

if TYPE_CHECKING:
    from facediag.core.crop import CropSpec
    from facediag.preprocess.face_results import FaceResult


class Aligner(Protocol):
    def crop(self, image: np.ndarray, result: FaceResult, crop: CropSpec) -> np.ndarray:
        """The uint8 (size, size, 3) ``crop`` of ``image`` for ``result``."""

    def crop_matrix(self, result: FaceResult, crop: CropSpec) -> np.ndarray:
        """(2, 3) map from image to crop pixels (to draw landmarks on the crop)."""

    def describe(self) -> dict[str, Any]: ...


class SimilarityAligner:
    """Least-squares similarity from the landmarks onto a template (``points`` = 68 or 5).

    With 68 points and the "dlib" template this is dlib's ``get_face_chip`` geometry. A
    ``center_crop`` fallback result (no landmarks) gets the image's central square.
    """

    def __init__(self, points: int = 68):
        if points not in (68, 5):
            raise ValueError(f"points must be 68 or 5, got {points}")
        self.points = int(points)

    def crop(self, image: np.ndarray, result: FaceResult, crop: CropSpec) -> np.ndarray:
        if result.landmarks is not None:
            return warp(image, alignment_matrix(result.landmarks, *crop, self.points), crop.size)
        if result.status == "center_crop":
            return center_square_resize(image, crop.size)
        raise ValueError(f"{result.path}: no landmarks to align (status {result.status})")

    def crop_matrix(self, result: FaceResult, crop: CropSpec) -> np.ndarray:
        if result.landmarks is not None:
            matrix = alignment_matrix(result.landmarks, *crop, self.points)
            return chip_matrix(matrix, crop.size)
        if result.status == "center_crop" and result.image_size is not None:
            return resize_matrix(*result.image_size, crop.size)
        raise ValueError(f"{result.path}: no landmarks to align (status {result.status})")

    def describe(self) -> dict[str, Any]:
        return {"name": "similarity", "points": self.points}


class ResizeAligner:
    """For images that are already aligned (``preprocess=none``): the central square, resized.

    Non-square images lose the edges of their longer side rather than being stretched;
    ``template`` and ``padding`` do not apply.
    """

    def crop(self, image: np.ndarray, result: FaceResult, crop: CropSpec) -> np.ndarray:
        return center_square_resize(image, crop.size)

    def crop_matrix(self, result: FaceResult, crop: CropSpec) -> np.ndarray:
        if result.image_size is None:
            raise ValueError(f"{result.path}: image size unknown (status {result.status})")
        return resize_matrix(*result.image_size, crop.size)

    def describe(self) -> dict[str, Any]:
        return {"name": "resize"}
