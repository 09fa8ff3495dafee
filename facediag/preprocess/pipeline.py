"""The preprocessing pipeline: detect → 68 landmarks → align → crop, cached, parallel, honest about failures."""

from __future__ import annotations

import copy
import dataclasses
import importlib
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import cv2
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from facediag.core.crop import DEFAULT_CROP, CropSpec
from facediag.core.download import sha256_file
from facediag.core.imageio import DEFAULT_MAX_PIXELS, BadImageError, read_rgb
from facediag.core.status import ERROR, listing_status
from facediag.preprocess.align import TEMPLATES, transform_points
from facediag.preprocess.aligners import Aligner, ResizeAligner, SimilarityAligner
from facediag.preprocess.cache import PreprocessCache, config_hash
from facediag.preprocess.detectors import Detection, FaceDetector
from facediag.preprocess.face_results import FaceResult, results_frame
from facediag.preprocess.faces import Faces, as_rows
from facediag.preprocess.harmonise import Harmoniser
from facediag.preprocess.landmark_weights import ModelUnavailableError
from facediag.preprocess.landmarks import Landmarker

NO_FACE_POLICIES = ("skip", "center_crop")


class OtherLandmarker(NamedTuple):
    """A landmarker a ``faces(..., landmarker=...)`` call can ask for: its ``module:function(preprocessor, results)
    -> (N, 68, 2)`` image-pixel points (NaN where none) and what it is, in words (methods paragraphs, messages)."""

    function: str
    words: str


#: the landmarkers besides the preprocessing's own (None), by name
LANDMARKERS = {"mesh": OtherLandmarker("facediag.preprocess.face_mesh:mesh_landmarks", "MediaPipe's face mesh"),
               "dlib_averaged": OtherLandmarker("facediag.preprocess.averaged_landmarks:averaged_landmarks",
                                                "dlib's, averaged over perturbed starts")}


def default_n_workers() -> int:
    """min(usable CPU cores, 8)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


class Preprocessor:
    """detector → landmarker → aligner, with a cache and a parallel cold pass.

    ``harmonise``: the capture harmonisation steps applied to every crop (:mod:`facediag.preprocess.harmonise`).

    ``detector=None, landmarker=None`` means the images are already aligned (``preprocess=none``):
    every readable image is "ok" and its crop is the resized central square.

    Robust detection: the detector sees a copy whose longest side is ``detect_max_side`` pixels
    (never upscaled), boxes are mapped back and the landmarks are fitted on the full-resolution
    image. No face → one retry on the upsampled copy (``retry_upsampled``) → policy ``no_face``:
    "skip" (status "no_face") or "center_crop" (flagged). Several faces → the largest is kept and
    ``n_faces`` records the count; detections scoring below ``min_relative_score`` x the best score
    cannot be chosen (a weak HOG false positive on clothing or hair can be larger than the face).

    Cold images run in ``n_workers`` processes (default min(cores, 8)) with a tqdm bar. ``mp_context``
    defaults to "fork" on Linux (dlib models load once in the parent and are shared; OpenCV is made
    single-threaded while forking, torch in workers uses one thread) and "spawn" elsewhere. A model
    that cannot be loaded (e.g. FAN weights offline) raises ModelUnavailableError before any work.
    """

    def __init__(
        self,
        detector: FaceDetector | None = None,
        landmarker: Landmarker | None = None,
        aligner: Aligner | None = None,
        cache_dir: str | os.PathLike | None = None,
        n_workers: int | None = None,
        no_face: str = "skip",
        detect_max_side: int | None = 640,
        retry_upsampled: bool = True,
        min_relative_score: float = 0.5,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        progress: bool = True,
        mp_context: str | None = None,
        harmonise: Sequence[str | Any] | None = None,
    ):
        if (detector is None) != (landmarker is None):
            raise ValueError("give both a detector and a landmarker, or neither (images already aligned)")
        if no_face not in NO_FACE_POLICIES:
            raise ValueError(f"no_face must be one of {NO_FACE_POLICIES}, got {no_face!r}")
        if n_workers is not None and n_workers < 1:
            raise ValueError(f"n_workers must be >= 1 or None, got {n_workers}")
        self.detector = detector
        self.landmarker = landmarker
        self.aligner = aligner if aligner is not None else (SimilarityAligner() if detector else ResizeAligner())
        self.cache_dir = None if cache_dir is None else str(cache_dir)
        self.n_workers = n_workers if n_workers is not None else default_n_workers()
        self.no_face = no_face
        self.detect_max_side = detect_max_side
        self.retry_upsampled = retry_upsampled
        self.min_relative_score = float(min_relative_score)
        self.max_pixels = int(max_pixels)
        self.progress = progress
        self.mp_context = mp_context or ("fork" if sys.platform.startswith("linux") else "spawn")
        self.harmoniser = Harmoniser(harmonise)
        if self.harmoniser.needs_landmarks and detector is None:
            raise ValueError(
                "preprocess.harmonise: the resample and background steps need landmarks, and this "
                "preprocessing finds none (images already aligned); use blur, noise or jpeg only"
            )
        self._config_hash: str | None = None

    # ------------------------------------------------------------------ configuration

    def describe(self) -> dict[str, Any]:
        """Everything that changes the landmarks (the cache key)."""
        return {
            "detector": None if self.detector is None else self.detector.describe(),
            "landmarker": None if self.landmarker is None else self.landmarker.describe(),
            "no_face": self.no_face,
            "detect_max_side": self.detect_max_side,
            "retry_upsampled": self.retry_upsampled,
            "min_relative_score": self.min_relative_score,
            "max_pixels": self.max_pixels,
        }

    def unharmonised(self) -> Preprocessor:
        """This preprocessing without ``harmonise`` steps (one landmark cache): plain crops, e.g. for identity."""
        if not self.harmoniser:
            return self
        plain = copy.copy(self)
        plain.harmoniser = Harmoniser()
        return plain

    @property
    def config_hash(self) -> str:
        if self._config_hash is None:
            self._config_hash = config_hash(self.describe())
        return self._config_hash

    # ------------------------------------------------------------------ one image

    def analyse(self, image: np.ndarray, path: str = "") -> FaceResult:
        """Detect and landmark the largest face of an upright uint8 RGB image (no cache)."""
        height, width = image.shape[:2]
        result = FaceResult(path=path, status="ok", image_size=(width, height))
        if self.detector is None or self.landmarker is None:
            result.box = (0.0, 0.0, float(width), float(height))
            return result
        detections, fallback = self._detect(image)
        result.n_faces = len(detections)
        if not detections:
            searched = f"searched at {self._detect_side(width, height)} px" + (
                " and upsampled" if self.retry_upsampled else ""
            )
            if self.no_face == "center_crop":
                result.status, result.fallback = "center_crop", "center_crop"
                result.reason = f"no face found ({searched}); the central square is used instead"
            else:
                result.status, result.reason = "no_face", f"no face found ({searched})"
            return result
        best = max(detection.score for detection in detections)
        confident = [d for d in detections if d.score >= best * self.min_relative_score] if best > 0 else detections
        largest = max(confident, key=lambda detection: detection.area)
        result.box, result.det_score, result.fallback = largest.box, largest.score, fallback
        result.landmarks = self.landmarker.landmarks(image, largest.box)
        return result

    def _detect_side(self, width: int, height: int) -> int:
        longest = max(width, height)
        return longest if not self.detect_max_side else min(longest, int(self.detect_max_side))

    def _detect(self, image: np.ndarray) -> tuple[list[Detection], str]:
        assert self.detector is not None
        height, width = image.shape[:2]
        side = self._detect_side(width, height)
        small = downscale(image, side)
        detections, fallback = self.detector.detect(small), ""
        if not detections and self.retry_upsampled:
            detections, fallback = self.detector.detect(small, upsample=True), "upsampled"
        sx, sy = small.shape[1] / width, small.shape[0] / height
        full = [Detection((d.box[0] / sx, d.box[1] / sy, d.box[2] / sx, d.box[3] / sy), d.score) for d in detections]
        return full, fallback

    def process(self, path: str, sha256: str = "") -> tuple[FaceResult, np.ndarray | None]:
        """Read and analyse one file; a bad file becomes an "error" result. Returns the image too."""
        try:
            image = read_rgb(path, self.max_pixels)
        except BadImageError as err:
            return FaceResult(path=path, status="error", reason=err.reason, sha256=sha256), None
        try:
            result = self.analyse(image, path)
        except ModelUnavailableError:
            raise
        except Exception as err:  # one odd image must not stop a run; reported, not cached
            reason = f"preprocessing failed: {type(err).__name__}: {err}"
            return FaceResult(path=path, status="error", reason=reason, sha256=sha256, cacheable=False), None
        result.sha256 = sha256
        return result, image

    def _prepare(self) -> None:
        """Make model files available once, in this process, before workers start (fail fast)."""
        for stage in (self.detector, self.landmarker):
            prepare = getattr(stage, "prepare", None)
            if prepare is not None:
                prepare()

    # ------------------------------------------------------------------ many images

    def landmarks(self, images: Sequence[str | os.PathLike] | pd.DataFrame) -> list[FaceResult]:
        """One FaceResult per image, in order; cold images run in ``n_workers`` processes, all are cached.

        ``images``: paths, or a table with a ``path`` column (a ``sha256`` column: the files are not hashed again).
        """
        results, _ = self._run(as_rows(images), None)
        return results

    def faces(
        self,
        images: Sequence[str | os.PathLike] | pd.DataFrame,
        crop: CropSpec = DEFAULT_CROP,
        *,
        crops: bool = True,
        landmarks: bool = False,
        landmarker: str | None = None,
    ) -> Faces:
        """The images that get an aligned ``crop``, as one :class:`~facediag.preprocess.faces.Faces` value.

        ``images``: paths, or a table with a ``path`` column (a split, a manifest): its rows ride along into
        ``Faces.rows`` and its ``sha256`` column saves hashing the files again. Kept are the images whose status is
        "ok" or "center_crop" (and whose crop could be made), in input order; ``Faces.results`` lists every image's
        result. ``crops=False``: no crop is made (the images that would get one are kept); ``landmarks=True``: each
        kept face's landmarks in crop pixels too; ``landmarker="mesh"``: those of MediaPipe's face mesh in the same
        68-point layout (:mod:`facediag.preprocess.face_mesh`) instead of this preprocessing's landmarker's,
        ``"dlib_averaged"``: dlib's averaged over perturbed starts (:mod:`facediag.preprocess.averaged_landmarks`).
        """
        if crop.template not in TEMPLATES:
            raise ValueError(f"unknown template {crop.template!r}; choose one of {TEMPLATES}")
        if crop.size <= 0 or crop.padding < 0:
            raise ValueError(f"need size > 0 and padding >= 0, got size={crop.size}, padding={crop.padding}")
        rows = as_rows(images)
        results, made = self._run(rows, crop if crops else None)
        kept = [i for i, r in enumerate(results) if r.has_crop and (not crops or made[i] is not None)]
        stacked = None
        if crops:
            empty = np.zeros((0, crop.size, crop.size, 3), dtype=np.uint8)
            stacked = np.stack([made[i] for i in kept]) if kept else empty
        faces = [results[i] for i in kept]
        return Faces(crop, rows.iloc[kept].reset_index(drop=True), tuple(faces), stacked,
                     self.crop_landmarks(faces, crop, landmarker) if landmarks else None, tuple(results))

    def crop_landmarks(self, results: Sequence[FaceResult], crop: CropSpec, landmarker: str | None = None
                       ) -> np.ndarray:
        """(N, 68, 2) float32 landmarks of ``results`` in ``crop`` pixels (the alignment's affine); NaN where none.
        ``landmarker``: None (this preprocessing's) or one of :data:`LANDMARKERS`."""
        if landmarker is not None and landmarker not in LANDMARKERS:
            raise ValueError(f"unknown landmarker {landmarker!r}; choose {' or '.join(LANDMARKERS)}, or none for "
                             "the preprocessing's own")
        found = [r.landmarks for r in results]
        if landmarker is not None:
            module, function = LANDMARKERS[landmarker].function.split(":")
            other = getattr(importlib.import_module(module), function)(self, results)
            found = [None if r.landmarks is None else p for r, p in zip(results, other, strict=True)]
        points = np.full((len(results), 68, 2), np.nan, dtype=np.float32)
        for i, (result, face) in enumerate(zip(results, found, strict=True)):
            if face is not None:
                points[i] = transform_points(face, self.aligner.crop_matrix(result, crop))
        return points

    def cached_views(
        self, results: Sequence[FaceResult], key: str, make: Callable[[FaceResult], np.ndarray], harmonised: bool
    ) -> np.ndarray:
        """``make(result)`` for each result, through this preprocessing's crop cache (by photo digest) under ``key``:
        another view of the photos than the aligned crop (a control's), made once per preprocessing config;
        ``harmonised``: the view passes this preprocessing's harmonisation, whose settings then key it too."""
        cache = PreprocessCache(self.cache_dir, self.config_hash)
        key += self._harmonise_key() if harmonised else ""
        views = []
        for result in results:
            view = cache.get_crop(result.sha256, key) if result.sha256 else None
            if view is None:
                view = make(result)
                if result.sha256:
                    cache.put_crop(result.sha256, key, view)
            views.append(view)
        return np.stack(views)

    def photo_points(self, results: Sequence[FaceResult], key: str,
                     find: Callable[[np.ndarray, FaceResult], np.ndarray], points: int = 68) -> np.ndarray:
        """(N, ``points``, 2) float32 image-pixel points ``find(photo, result)`` of each result with landmarks (the
        photo read at this preprocessing's size limit), kept in its cache under ``key`` (by photo digest); NaN for
        the others. Another landmarker's reading of the faces this preprocessing found."""
        from facediag.core.imageio import read_rgb

        found = np.full((len(results), points, 2), np.nan, dtype=np.float32)
        with_face = [i for i, r in enumerate(results) if r.landmarks is not None]
        if with_face:
            found[with_face] = self.cached_views([results[i] for i in with_face], key,
                                                 lambda r: find(read_rgb(r.path, self.max_pixels), r), harmonised=False)
        return found

    def _crop_key(self, crop: CropSpec) -> str:
        key = f"{crop.template}-{crop.size}-p{crop.padding:g}-{config_hash(self.aligner.describe())[:8]}"
        return key + self._harmonise_key()

    def _harmonise_key(self) -> str:
        """The part of a crop cache key that names the harmonisation ("" without one)."""
        return f"-h{config_hash({'harmonise': self.harmoniser.describe()})[:8]}" if self.harmoniser else ""

    def _run(
        self, rows: pd.DataFrame, crop: CropSpec | None
    ) -> tuple[list[FaceResult], list[np.ndarray | None]]:
        paths = [os.fspath(p) for p in rows["path"]]
        given = rows["sha256"].tolist() if "sha256" in rows.columns else [None] * len(paths)
        cache = PreprocessCache(self.cache_dir, self.config_hash)
        crop_key = self._crop_key(crop) if crop is not None else ""
        results: list[FaceResult | None] = [None] * len(paths)
        crops: list[np.ndarray | None] = [None] * len(paths)
        todo: list[tuple[int, str, str, FaceResult | None]] = []
        for index, path in enumerate(paths):
            # a record with its digest: manifest.csv listed, read and hashed the file; it is not hashed again
            known_sha = given[index] if isinstance(given[index], str) and given[index] else None
            if known_sha is None:
                listed = listing_status(path)  # a broken link, a hidden file, another extension: as in manifest.csv
                if listed is not None or not os.path.isfile(path):
                    status, reason = listed or (ERROR, "file not found")
                    results[index] = FaceResult(path=path, status=status, reason=reason)
                    continue
            try:
                sha = known_sha or sha256_file(path)
            except OSError as err:
                results[index] = FaceResult(path=path, status="error", reason=f"cannot read file ({err})")
                continue
            record = cache.get_result(sha)
            known = FaceResult.from_record(record, path) if record is not None else None
            if known is not None and crop is not None and known.has_crop:
                crops[index] = cache.get_crop(sha, crop_key)
            results[index] = known
            if known is None or (crop is not None and known.has_crop and crops[index] is None):
                todo.append((index, path, sha, known))

        for index, result, made in self._execute(todo, crop):
            results[index], crops[index] = result, made
            if result.cacheable and result.sha256:
                cache.put_result(result.sha256, result.to_record())
            if made is not None:
                cache.put_crop(result.sha256, crop_key, made)
        missing = [paths[i] for i, r in enumerate(results) if r is None]
        if missing:
            raise RuntimeError(f"preprocessing produced no result for {missing[:3]}")
        return results, crops  # type: ignore[return-value]

    def _execute(
        self, todo: list[tuple[int, str, str, FaceResult | None]], spec: CropSpec | None
    ) -> Iterator[tuple[int, FaceResult, np.ndarray | None]]:
        if not todo:
            return
        detecting = any(known is None for _, _, _, known in todo)
        if detecting:
            self._prepare()
        tasks = [(index, path, sha, known, spec) for index, path, sha, known in todo]
        workers = min(self.n_workers, len(tasks))
        desc = "preprocess" if spec is None else f"crops {spec.template} {spec.size}px"
        with tqdm(total=len(tasks), desc=desc, unit="img", disable=not self.progress) as bar:
            if workers <= 1:
                for task in tasks:
                    yield _run_task(self, task)
                    bar.update()
                return
            if detecting and self.mp_context == "fork":
                for stage in (self.detector, self.landmarker):
                    if getattr(stage, "share_by_fork", False):
                        stage.model  # noqa: B018  (load once here; forked workers inherit it)
            context = multiprocessing.get_context(self.mp_context)
            with _fork_safe_opencv(), context.Pool(workers, initializer=_init_worker, initargs=(self,)) as pool:
                for output in pool.imap_unordered(_worker_task, tasks, chunksize=1):
                    yield output
                    bar.update()

    # ------------------------------------------------------------------ reporting

    def report(self, results: Sequence[FaceResult]) -> pd.DataFrame:
        """One row per result: ``path,status,n_faces,det_score,fallback,reason,width,height,box_*,sha256``."""
        return results_frame(results)

    def qa_grid(
        self,
        paths_or_results: Sequence[str | os.PathLike | FaceResult],
        out_png: str | os.PathLike | None,
        n: int = 16,
        crop: CropSpec = DEFAULT_CROP,
        tile: int = 160,
    ) -> np.ndarray:
        """Grid of faces aligned as ``crop`` (drawn ``tile`` px) with their landmarks; writes ``out_png`` (if
        given), returns RGB.

        Flagged images (centre crops, faces found only when upsampled) come first, then evenly
        spaced "ok" ones; each tile is labelled with its file name and status.
        """
        from facediag.preprocess.qa import choose_for_grid, draw_grid, write_png

        items = list(paths_or_results)
        results = [item for item in items if isinstance(item, FaceResult)]
        if len(results) != len(items):
            results = self.landmarks([item.path if isinstance(item, FaceResult) else item for item in items])
        chosen = choose_for_grid(results, n)
        rows = pd.DataFrame({"path": [r.path for r in chosen], "sha256": [r.sha256 or None for r in chosen]})
        faces = self.faces(rows, dataclasses.replace(crop, size=tile), landmarks=True)
        points = [None if r.landmarks is None else p for r, p in zip(faces.kept, faces.landmarks, strict=True)]
        grid = draw_grid(faces.crops, points, list(faces.kept))
        if out_png is not None:
            write_png(grid, out_png)
        return grid


def downscale(image: np.ndarray, longest_side: int) -> np.ndarray:
    """Shrink so the longest side is ``longest_side`` (never enlarges): Gaussian-pyramid halvings,
    then one bilinear step of less than 2x, which is ~4x faster than INTER_AREA at the same quality."""
    height, width = image.shape[:2]
    if longest_side >= max(height, width):
        return image
    small = image
    while max(small.shape[:2]) >= 2 * longest_side:
        small = cv2.pyrDown(small)
    scale = longest_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(small, size, interpolation=cv2.INTER_LINEAR)


# ---------------------------------------------------------------------- worker side

_WORKER: Preprocessor | None = None


@contextmanager
def _fork_safe_opencv() -> Iterator[None]:
    """OpenCV single-threaded while workers are forked: a child inheriting OpenCV's thread pool
    (threads that do not exist after fork) hangs on its first parallel call."""
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


def _init_worker(preprocessor: Preprocessor) -> None:
    """One process per core: no nested thread pools (as torch's DataLoader workers do)."""
    global _WORKER
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    cv2.setNumThreads(1)
    if "torch" in sys.modules:  # the FAN backend; torch's OpenMP pool does not survive a fork
        sys.modules["torch"].set_num_threads(1)
    _WORKER = preprocessor


def _worker_task(task: tuple) -> tuple[int, FaceResult, np.ndarray | None]:
    assert _WORKER is not None, "worker not initialised"
    return _run_task(_WORKER, task)


def _run_task(pre: Preprocessor, task: tuple) -> tuple[int, FaceResult, np.ndarray | None]:
    index, path, sha, known, spec = task
    image = None
    result = known
    if result is None:
        result, image = pre.process(path, sha)
    crop = None
    if spec is not None and result.has_crop:
        try:
            if image is None:
                image = read_rgb(path, pre.max_pixels)
            crop = pre.harmoniser.crop(pre.aligner, image, result, spec)
        except (BadImageError, ValueError) as err:
            reason = f"crop failed: {getattr(err, 'reason', err)}"
            result = FaceResult(path=path, status="error", reason=reason, sha256=sha, cacheable=False)
    return index, result, crop
