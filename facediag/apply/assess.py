"""One photo (or many) through a trained run with every check: the engine of ``facediag.predict`` and the app.

    from facediag.apply.trained_run import TrainedRun
    from facediag.apply.assess import Assessor

    assessor = Assessor(TrainedRun(run_dir))          # load once per process; thread-safe
    photo = assessor.assess_image(upload_bytes, name="photo.jpg")   # a path, bytes or an RGB uint8 array
    photo.status, photo.reason, photo.flags, photo.flag_words      # ok / flagged / no_face / error ...
    photo.probabilities_by_class, photo.top1, photo.crop, photo.landmarks
    photo.row()                                        # the predictions CSV row

The flag codes and the status rule are in :mod:`facediag.apply.flags`; the out-of-distribution rule in
:mod:`facediag.apply.distribution`; saliency with its own status in :func:`facediag.apply.explain.explain_crop`.
A bad file (unreadable, too large, a decompression bomb) is answered with status ``error`` and a reason naming it,
never an exception. Research tool, not a diagnosis.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facediag.apply.distribution import DistributionCheck
from facediag.apply.flags import (
    CENTER_CROP_FLAG,
    LOW_DETECTOR_CONFIDENCE,
    OUT_OF_DISTRIBUTION,
    OVERLAP_DISTANCE,
    OVERLAPS_TRAINING_PERSON,
    SEVERAL_FACES,
    UPSAMPLED,
    flag_words,
    join,
    status_and_reason,
)
from facediag.core.crop import DEFAULT_CROP
from facediag.core.imageio import DEFAULT_MAX_BYTES, BadImageError, read_rgb, read_rgb_bytes
from facediag.core.status import CENTER_CROP, ERROR, OK

log = logging.getLogger(__name__)

ImageInput = str | os.PathLike | bytes | np.ndarray
IDENTITY_CHIP = DEFAULT_CROP  # dlib's face chip, facediag.data.identity.IDENTITY_BACKBONE's align


@dataclass
class PhotoResult:
    """Everything known about one photo scored by a run (one row of the predictions CSV)."""

    path: str  # the file, or the name the caller gave an upload
    status: str  # facediag.core.status: ok, flagged, center_crop, no_face, error, not_image, excluded
    reason: str = ""  # why, in words (empty when ok)
    flags: list[str] = field(default_factory=list)  # facediag.apply.flags codes
    details: dict[str, str] = field(default_factory=dict)  # per flag: the numbers behind it
    classes: list[str] = field(default_factory=list)
    scores: np.ndarray | None = None  # (C,) the run's scores; None when not scored
    probabilities: np.ndarray | None = None  # (C,)
    crop: np.ndarray | None = None  # (H, W, 3) uint8: the aligned crop the model scored
    landmarks: np.ndarray | None = None  # (68, 2) float32 in crop pixels; NaN for a centre crop
    distance: float = math.nan  # to the training photos (facediag.apply.distribution); NaN when not measured
    threshold: float = math.nan  # the run's calibrated out-of-distribution threshold
    det_score: float = math.nan
    n_faces: int | None = None

    @property
    def scored(self) -> bool:
        return self.probabilities is not None

    @property
    def top1(self) -> str | None:
        return None if self.probabilities is None else self.classes[int(np.argmax(self.probabilities))]

    @property
    def probabilities_by_class(self) -> dict[str, float]:
        """class → probability, highest first (empty when not scored)."""
        if self.probabilities is None:
            return {}
        order = np.argsort(self.probabilities)[::-1]
        return {self.classes[i]: float(self.probabilities[i]) for i in order}

    @property
    def flag_words(self) -> list[str]:
        """Each flag in words, with its numbers."""
        return flag_words(self.flags, self.details)

    def row(self) -> dict[str, Any]:
        """The predictions CSV row: path, status, reason, flags, top1, score_<class>..., p_<class>..., distance,
        distance_threshold, det_score, n_faces."""
        from facediag.scoring.results import score_columns

        record: dict[str, Any] = {"path": self.path, "status": self.status, "reason": self.reason,
                                  "flags": join(self.flags)}
        if self.scores is not None and self.probabilities is not None:
            record["top1"] = self.top1
            record.update(zip(score_columns(self.classes), self.scores.tolist(), strict=True))
            record.update(zip([f"p_{c}" for c in self.classes], self.probabilities.tolist(), strict=True))
        record.update(distance=self.distance, distance_threshold=self.threshold, det_score=self.det_score,
                      n_faces=self.n_faces)
        return record


def columns(classes: Sequence[str]) -> list[str]:
    """The predictions CSV's columns, in order."""
    from facediag.scoring.results import score_columns

    return ["path", "status", "reason", "flags", "top1", *score_columns(classes), *[f"p_{c}" for c in classes],
            "distance", "distance_threshold", "det_score", "n_faces"]


def load_image(image: ImageInput, name: str = "", max_pixels: int | None = None,
               max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[np.ndarray, str, str]:
    """(upright uint8 RGB, name, sha256 of the bytes or "") of a path, encoded bytes or an RGB/grey array; raises
    BadImageError naming the file for a bad one (unreadable, over ``max_bytes`` or ``max_pixels``)."""
    from facediag.core.imageio import DEFAULT_MAX_PIXELS

    max_pixels = max_pixels or DEFAULT_MAX_PIXELS
    if isinstance(image, np.ndarray):
        name = name or "array"
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
            raise BadImageError(name, f"an image array must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
        if image.shape[0] * image.shape[1] > max_pixels:
            raise BadImageError(name, f"{image.shape[1]}x{image.shape[0]} pixels exceeds the limit of {max_pixels}")
        return np.ascontiguousarray(image[..., :3]), name, ""
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        name = name or "upload"
        return read_rgb_bytes(data, name, max_pixels, max_bytes), name, hashlib.sha256(data).hexdigest()
    path = Path(image)
    name = name or str(image)
    if path.is_file() and path.stat().st_size > max_bytes:
        raise BadImageError(name, f"{path.stat().st_size} bytes exceeds the upload limit of {max_bytes}")
    pixels = read_rgb(path, max_pixels)
    from facediag.core.download import sha256_file

    return pixels, name, sha256_file(path)


class Assessor:
    """A ``TrainedRun`` with its checks: detection flags, the out-of-distribution distance and the overlap with
    training people. ``check_distribution`` / ``check_overlap`` turn a check off. Models and references load on
    first use, once; every method is safe to call from several threads."""

    def __init__(self, run: Any, check_distribution: bool = True, check_overlap: bool = True):
        self.run = run
        self.distribution = DistributionCheck(run) if check_distribution else None
        self.check_overlap = check_overlap
        self._lock = threading.RLock()
        self._preprocessor: Any = None
        self._identity_net: Any = None
        self._overlap_reference: tuple[set[str], np.ndarray] | None = None
        self._distribution_failed: str | None = None

    # ------------------------------------------------------------------ public

    def assess_image(self, image: ImageInput, name: str = "") -> PhotoResult:
        """One photo (a path, encoded bytes or an RGB uint8 array): preprocessed as the run did, scored and
        checked. Never raises for a bad photo: status ``error`` (or ``no_face``) with the reason."""
        label = name or (str(image) if isinstance(image, (str, os.PathLike)) else "")
        try:
            pixels, label, sha = load_image(image, label, self.preprocessor().max_pixels)
        except BadImageError as err:
            return PhotoResult(label or err.path, ERROR, str(err), classes=list(self.run.classes))
        pre = self.preprocessor()
        try:
            result = pre.analyse(pixels, label)
            result.sha256 = sha
            if not result.has_crop:
                return self._unscored(result)
            crop = pre.harmoniser.crop(pre.aligner, pixels, result, self.run.crop)
            chip = self._identity_chip(pixels, result, crop)
        except Exception as err:  # one odd image must not break a service: reported like preprocessing does
            return PhotoResult(label, ERROR, f"{label}: preprocessing failed: {type(err).__name__}: {err}",
                               classes=list(self.run.classes))
        return self._assess([result], crop[None], None if chip is None else chip[None])[0]

    def assess_paths(self, paths: Sequence[str | os.PathLike], n_workers: int | None = 1,
                     cache_dir: str | os.PathLike | None = None, progress: bool = False) -> list[PhotoResult]:
        """Many files, one result each, in order (the run's cached preprocessing, ``n_workers`` processes)."""
        scored = self.run.score(paths, n_workers=n_workers, cache_dir=cache_dir, progress=progress)
        return self.assess_scored(scored)

    def assess_scored(self, scored: Any) -> list[PhotoResult]:
        """The results of a ``TrainedRun.score`` pass, checked: one PhotoResult per input, in order."""
        position = {path: i for i, path in enumerate(scored.paths)}
        kept = [r for r in scored.results if r.path in position]
        chips = self._identity_chips_of_paths([r.path for r in kept]) if kept and self.check_overlap else None
        done = iter(self._assess(kept, scored.crops, chips, scored.scores, scored.probabilities))
        return [next(done) if r.path in position else self._unscored(r) for r in scored.results]

    def preprocessor(self) -> Any:
        """The run's Preprocessor, made once (one process: a service answers one photo at a time)."""
        with self._lock:
            if self._preprocessor is None:
                self._preprocessor = self.run.preprocessor(n_workers=1)
            return self._preprocessor

    def distribution_note(self) -> str | None:
        """Why the out-of-distribution check could not run (None when it ran or was not asked for)."""
        return self._distribution_failed

    # ------------------------------------------------------------------ checks

    def _unscored(self, result: Any) -> PhotoResult:
        reason = result.reason or ("no face found" if result.status != OK else "")
        return PhotoResult(result.path, result.status, reason, classes=list(self.run.classes),
                           det_score=result.det_score, n_faces=result.n_faces)

    def _assess(self, results: Sequence[Any], crops: np.ndarray, chips: np.ndarray | None,
                scores: np.ndarray | None = None, probabilities: np.ndarray | None = None) -> list[PhotoResult]:
        if len(results) == 0:
            return []
        if scores is None or probabilities is None:
            scores, probabilities = self.run.score_crops(crops)
        landmarks = self.preprocessor().crop_landmarks(results, self.run.crop)
        distances, threshold = self._distances(crops)
        overlaps = self._overlaps(results, chips)
        detector_threshold = self._detector_threshold()
        out = []
        for i, result in enumerate(results):
            flags, details = [], {}
            if result.status == CENTER_CROP:
                flags.append(CENTER_CROP_FLAG)
            if result.fallback == "upsampled":
                flags.append(UPSAMPLED)
            if detector_threshold is not None and result.det_score < detector_threshold:
                flags.append(LOW_DETECTOR_CONFIDENCE)
                details[LOW_DETECTOR_CONFIDENCE] = f"score {result.det_score:.2f} < {detector_threshold:.2f}"
            if (result.n_faces or 0) > 1:
                flags.append(SEVERAL_FACES)
                details[SEVERAL_FACES] = f"{result.n_faces} found"
            if distances[i] > threshold:
                flags.append(OUT_OF_DISTRIBUTION)
                details[OUT_OF_DISTRIBUTION] = f"distance {distances[i]:.3f} > threshold {threshold:.3f}"
            if overlaps[i]:
                flags.append(OVERLAPS_TRAINING_PERSON)
                details[OVERLAPS_TRAINING_PERSON] = overlaps[i]
            status, reason = status_and_reason(result.status, result.reason, flags, details)
            out.append(PhotoResult(
                result.path, status, reason, flags, details, list(self.run.classes), scores[i], probabilities[i],
                crops[i], landmarks[i], float(distances[i]), threshold, result.det_score, result.n_faces,
            ))  # fmt: skip
        return out

    def _distances(self, crops: np.ndarray) -> tuple[np.ndarray, float]:
        """Each crop's distance to the training photos and the threshold (NaN where the check cannot run)."""
        nothing = np.full(len(crops), np.nan), math.nan
        if self.distribution is None or self._distribution_failed:
            return nothing
        from facediag.strategies.predictor import CapabilityError

        try:
            threshold = self.distribution.threshold
            return self.distribution.distances(crops), threshold
        except (CapabilityError, FileNotFoundError, ValueError, AttributeError, NotImplementedError) as err:
            self._distribution_failed = f"the out-of-distribution check could not run: {err}"
            log.warning("%s", self._distribution_failed)
            return nothing

    def _detector_threshold(self) -> float | None:
        if self.distribution is None or self._distribution_failed:
            return None
        try:
            return self.distribution.calibration().detector_threshold
        except Exception:  # the distance check already reported it
            return None

    # ------------------------------------------------------------------ overlap with training people

    def _overlap_references(self) -> tuple[set[str], np.ndarray]:
        """(sha256 of the training/validation files, their identity descriptors (N, 128)); files not on this
        machine are compared by their bytes only."""
        with self._lock:
            if self._overlap_reference is None:
                from facediag.data.identity import face_descriptors

                seen = self.run.training_rows()
                present = [p for p in seen["path"] if Path(p).is_file()]
                found = face_descriptors(present, self.run.preprocessor(n_workers=1), self.run.cfg.preprocess,
                                         self.run.cfg.paths.cache_dir)
                self._overlap_reference = (set(seen["sha256"].dropna()), found.vectors[found.has_face])
            return self._overlap_reference

    def _identity_chip(self, pixels: np.ndarray, result: Any, crop: np.ndarray) -> np.ndarray | None:
        """The dlib chip identity is read from (the run's crop when it is that chip, unharmonised)."""
        if not self.check_overlap or result.landmarks is None:
            return None
        pre = self.preprocessor()
        if self.run.crop == IDENTITY_CHIP and not pre.harmoniser:
            return crop
        return pre.aligner.crop(pixels, result, IDENTITY_CHIP)

    def _identity_chips_of_paths(self, paths: Sequence[str]) -> np.ndarray:
        pre = self.run.preprocessor(n_workers=1).unharmonised()
        faces = pre.faces(list(paths), IDENTITY_CHIP)
        by_path = dict(zip(faces.paths, faces.crops, strict=True))
        blank = np.zeros((IDENTITY_CHIP.size, IDENTITY_CHIP.size, 3), np.uint8)
        return np.stack([by_path.get(p, blank) for p in paths])

    def _identity_vectors(self, chips: np.ndarray) -> np.ndarray:
        from facediag.models import create, extract_features

        with self._lock:
            if self._identity_net is None:
                weights = Path(self.run.cfg.paths.cache_dir) / "weights"
                self._identity_net = create("dlib_resnet", "dlib_faces", cache_dir=weights,
                                            feature_layer="descriptor").eval()
        return extract_features(self._identity_net, chips)

    def _overlaps(self, results: Sequence[Any], chips: np.ndarray | None) -> list[str]:
        """Per result: why it overlaps the training data, in words ("" when it does not)."""
        found = [""] * len(results)
        if not self.check_overlap:
            return found
        try:
            hashes, vectors = self._overlap_references()
        except (FileNotFoundError, KeyError, ValueError) as err:
            log.warning("%s: overlap with training people not checked (%s)", self.run.run_dir, err)
            return found
        for i, result in enumerate(results):
            if result.sha256 and result.sha256 in hashes:
                found[i] = "the same file as a training/validation photo"
        if chips is not None and len(vectors):
            from facediag.data.identity import descriptor_distances

            distances = descriptor_distances(self._identity_vectors(chips), vectors)
            for i, result in enumerate(results):
                j = int(np.argmin(distances[i]))
                if not found[i] and result.landmarks is not None and distances[i, j] <= OVERLAP_DISTANCE:
                    # the training photo is not named: training photos are often private
                    found[i] = f"identity distance {distances[i, j]:.3f} <= {OVERLAP_DISTANCE} to a training photo"
        return found
