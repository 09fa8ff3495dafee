"""One run served to a web page: the model loaded once per process, one photo in, one ``PhotoRecord`` out.

``RunService`` holds a ``TrainedRun``, its preprocessing (no disk cache for uploads: a visitor's photos leave no
landmarks or crops behind), the saliency explainers and, only with ``show_neighbours``, the training features. Every
call goes through one lock (the model, dlib and Grad-CAM's hooks are not thread-safe), and a photo that fails in any
way becomes a record with status ``error`` and the reason in words: the page never sees a traceback.

Uploads (``uploads``): only files inside the upload folder of the web framework are read (a path typed by a client is
refused), zips are opened in memory with limits on members and unpacked size, and images above ``max_pixels`` are
refused before decoding (:func:`facediag.core.imageio.read_rgb`), so a decompression bomb gets a message.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from facediag.core.imageio import DEFAULT_MAX_PIXELS, is_image_file

log = logging.getLogger(__name__)

MAX_ZIP_MEMBERS = 500
MAX_UNPACKED_BYTES = 500 * 2**20  # a zip's images together, unpacked
MAX_MEMBER_BYTES = 50 * 2**20  # one image inside a zip
# flag code -> words, until facediag.apply.flags (the one vocabulary of predict, explain and the app) is importable
FALLBACK_FLAGS = {
    "center_crop": "no face found: the central square was scored instead",
    "upsampled": "the face was found only after upsampling the photo (small or unclear, perhaps not a face)",
    "several_faces": "several faces in the photo: only the largest was scored",
    "blank_saliency": "the saliency map is blank: this method shows nothing for this photo",
}


def flag_vocabulary() -> dict[str, str]:
    """Flag code -> words: ``facediag.apply.flags.FLAGS`` where it exists, with the app's own codes added."""
    try:
        from facediag.apply.flags import FLAGS
    except ImportError:
        return dict(FALLBACK_FLAGS)
    return {**FALLBACK_FLAGS, **FLAGS}


class UploadError(ValueError):
    """An upload that cannot be used (outside the upload folder, a bad zip); the message says why."""


@dataclass
class Upload:
    """An uploaded image: ``name`` as the visitor called it (no folders of this machine), ``path`` its local copy."""

    name: str
    path: str


@dataclass
class PhotoRecord:
    """What the page shows of one photo. ``flags`` are codes, ``flag_words`` their words; ``probabilities`` is empty
    when nothing was scored; ``crop`` has the landmarks drawn; ``overlay`` is the saliency over the crop."""

    name: str
    status: str
    reason: str = ""
    flags: list[str] = field(default_factory=list)
    flag_words: list[str] = field(default_factory=list)
    probabilities: dict[str, float] = field(default_factory=dict)
    top1: str | None = None
    crop: np.ndarray | None = None
    overlay: np.ndarray | None = None
    saliency_method: str = ""
    neighbours: list[tuple[np.ndarray, str]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The JSON-safe part (the API's answer and the batch CSV's row)."""
        return {"name": self.name, "status": self.status, "reason": self.reason, "flags": list(self.flags),
                "flag_words": list(self.flag_words), "top1": self.top1,
                "probabilities": {c: round(float(p), 6) for c, p in self.probabilities.items()},
                "saliency_method": self.saliency_method}


def upload_root() -> Path:
    """The folder the web framework keeps uploads in (Gradio: ``GRADIO_TEMP_DIR``, else <tmp>/gradio)."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()


def checked_upload(path: str | os.PathLike, root: Path | None = None) -> Path:
    """``path`` resolved, if it lies inside the upload folder; otherwise UploadError (a client's own path)."""
    root = root or upload_root()
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(root) or not resolved.is_file():
        raise UploadError(f"{Path(path).name}: not an uploaded file (only files sent through the page are read)")
    return resolved


def unzip(archive: Path, into: Path) -> tuple[list[Upload], list[tuple[str, str]]]:
    """The image members of a zip written into ``into`` (flat, numbered names), and (name, why) of those skipped.
    Refuses archives with too many members or too many bytes unpacked; never writes outside ``into``."""
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = [m for m in bundle.infolist() if not m.is_dir()]
            if len(members) > MAX_ZIP_MEMBERS:
                raise UploadError(f"{archive.name}: {len(members)} files; at most {MAX_ZIP_MEMBERS} per zip")
            total = sum(m.file_size for m in members)
            if total > MAX_UNPACKED_BYTES:
                raise UploadError(f"{archive.name}: {total / 2**20:.0f} MiB unpacked; at most "
                                  f"{MAX_UNPACKED_BYTES / 2**20:.0f} MiB")
            uploads, skipped = [], []
            for number, member in enumerate(members):
                name = PurePosixPath(member.filename).name
                if name.startswith(".") or not is_image_file(name):
                    skipped.append((f"{archive.name}/{member.filename}", "not an image file (by its extension)"))
                    continue
                if member.file_size > MAX_MEMBER_BYTES:
                    skipped.append((f"{archive.name}/{member.filename}", "larger than the limit for one image"))
                    continue
                target = into / f"{number:04d}{PurePosixPath(name).suffix.lower()}"
                with bundle.open(member) as source:
                    data = source.read(MAX_MEMBER_BYTES + 1)
                if len(data) > MAX_MEMBER_BYTES:  # the header lied about the size
                    skipped.append((f"{archive.name}/{member.filename}", "larger than the limit for one image"))
                    continue
                target.write_bytes(data)
                uploads.append(Upload(f"{archive.name}/{member.filename}", str(target)))
            return uploads, skipped
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, OSError) as err:
        raise UploadError(f"{archive.name}: not a readable zip ({err})") from None


def uploads(paths: Sequence[str | os.PathLike], scratch: Path, root: Path | None = None,
            ) -> tuple[list[Upload], list[tuple[str, str]]]:
    """Images to analyse from uploaded files (zips unpacked into ``scratch``), and (name, why) of the refused."""
    found: list[Upload] = []
    refused: list[tuple[str, str]] = []
    for path in paths:
        try:
            local = checked_upload(path, root)
            if local.suffix.lower() == ".zip":
                images, skipped = unzip(local, Path(tempfile.mkdtemp(dir=scratch)))
                found += images
                refused += skipped
            else:
                found.append(Upload(local.name, str(local)))
        except UploadError as err:
            refused.append((Path(path).name, str(err).split(": ", 1)[-1]))
    return found, refused


class RunService:
    """A run dir loaded once and served photo by photo (see the module docstring)."""

    def __init__(self, run_dir: str | os.PathLike, show_neighbours: bool = False, k_neighbours: int = 3,
                 max_pixels: int = DEFAULT_MAX_PIXELS):
        from facediag.apply.trained_run import TrainedRun

        self.run = TrainedRun(run_dir)
        self.run_dir = Path(run_dir)
        self.classes: list[str] = list(self.run.classes)
        self.preprocessor = self.run.preprocessor(n_workers=1, progress=False)
        self.preprocessor.cache_dir = None  # uploads are never cached on disk
        self.preprocessor.max_pixels = int(max_pixels)
        self.show_neighbours, self.k_neighbours = show_neighbours, int(k_neighbours)
        self.lock = threading.Lock()
        self._explainers: dict[str, Any] = {}
        self._reference: Any = None
        self._cam_layer: Any = None
        self.vocabulary = flag_vocabulary()
        self.warm_up()

    @property
    def methods(self) -> list[str]:
        """The saliency methods this run supports (Grad-CAM needs a CNN)."""
        from facediag.apply.saliency import METHODS

        return [m for m in METHODS if m != "gradcam" or self.run.predictor.has_cnn]

    @property
    def name(self) -> str:
        return f"{self.run_dir.name}: {self.run.description}"

    def warm_up(self) -> None:
        """Load the model (and the Grad-CAM module, the training features) now, not on the first visitor's photo."""
        size = self.run.crop.size
        blank = np.full((1, size, size, 3), 128, np.uint8)
        self.run.score_crops(blank)
        self.saliency(self.methods[0], blank[0], 0)
        detector, landmarker = self.preprocessor.detector, self.preprocessor.landmarker
        if detector is not None and landmarker is not None:  # the detection and landmark models, read now
            picture = np.full((2 * size, 2 * size, 3), 128, np.uint8)
            detector.detect(picture)
            landmarker.landmarks(picture, (size / 2, size / 2, 1.5 * size, 1.5 * size))
        if self.show_neighbours:
            self.reference()

    def explainer(self, method: str) -> Any:
        from facediag.apply.explain import Explainer

        if method not in self._explainers:
            self._explainers[method] = Explainer(self.run, method)
        return self._explainers[method]

    def saliency(self, method: str, crop: np.ndarray, target: int) -> np.ndarray:
        """(H, W) saliency map of class ``target`` for one crop (Grad-CAM's layer found once per process)."""
        if method != "gradcam":
            return self.explainer(method).saliency(crop[None], [target])[0]
        from facediag.apply.saliency import backbone_of, cam_layer, gradcam

        module = self.explainer(method).cnn()
        if self._cam_layer is None:
            self._cam_layer = cam_layer(backbone_of(module))
        return gradcam(module, crop[None], [target], self._cam_layer)[0]

    def reference(self) -> Any:
        """The training photos' features and a cached preprocessor for their thumbnails (``show_neighbours``)."""
        if self._reference is None:
            from facediag.apply.neighbours import run_features

            self._reference = (run_features(self.run), self.run.preprocessor(n_workers=1, progress=False))
        return self._reference

    # ------------------------------------------------------------------ one photo

    def analyse(self, upload: Upload, method: str | None = None, saliency: bool = True) -> PhotoRecord:
        """The record of one uploaded photo; any failure becomes status ``error`` with the reason."""
        method = method or self.methods[0]
        try:
            if method not in self.methods:
                return PhotoRecord(upload.name, "error", f"method {method!r} is not available; choose {self.methods}")
            with self.lock:
                return self._analyse(upload, method, saliency)
        except Exception as err:  # a visitor gets a message, the log gets the traceback
            log.exception("analysing %s failed", upload.name)
            return PhotoRecord(upload.name, "error", f"could not be analysed ({type(err).__name__}: {err})")

    def _analyse(self, upload: Upload, method: str, saliency: bool) -> PhotoRecord:
        from facediag.models.geometry import crop_landmarks

        results, crops = self.preprocessor.results_and_crops([upload.path], *self.run.crop)
        result, crop = results[0], crops[0]
        reason = result.reason.replace(upload.path, upload.name)
        if not result.has_crop or crop is None:
            return PhotoRecord(upload.name, result.status, reason or "no face found")
        flags = self.face_flags(result)
        _, probabilities = self.run.score_crops(crop[None])
        p = probabilities[0]
        landmarks = crop_landmarks(self.preprocessor, [result], *self.run.crop)[0]
        record = PhotoRecord(upload.name, result.status, reason, flags,
                             probabilities=dict(zip(self.classes, map(float, p), strict=True)),
                             top1=self.classes[int(p.argmax())], crop=with_landmarks(crop, landmarks))
        if saliency:
            self.add_saliency(record, crop, landmarks, int(p.argmax()), method)
        if self.show_neighbours:
            record.neighbours = self.neighbours(crop)
        record.flag_words = [self.vocabulary.get(code, code) for code in record.flags]
        if record.status == "ok" and record.flags:
            record.status = "flagged"
        return record

    @staticmethod
    def face_flags(result: Any) -> list[str]:
        """Flag codes read from the face detection (``center_crop``, ``upsampled``, ``several_faces``)."""
        flags = []
        if result.status == "center_crop":
            flags.append("center_crop")
        if result.fallback == "upsampled":
            flags.append("upsampled")
        if (result.n_faces or 0) > 1:
            flags.append("several_faces")
        return flags

    def add_saliency(self, record: PhotoRecord, crop: np.ndarray, landmarks: np.ndarray, target: int,
                     method: str) -> None:
        """The overlay of ``method``'s map; a blank map is flagged and, for Grad-CAM, occlusion is drawn instead."""
        from facediag.apply.saliency import overlay

        heat = self.saliency(method, crop, target)
        record.saliency_method = method
        if blank(heat) and method != "occlusion" and "occlusion" in self.methods:
            heat = self.saliency("occlusion", crop, target)
            record.saliency_method = f"occlusion (the {method} map was blank)"
        if blank(heat):
            record.flags.append("blank_saliency")
        record.overlay = overlay(crop, heat, landmarks)

    def neighbours(self, crop: np.ndarray) -> list[tuple[np.ndarray, str]]:
        """The ``k_neighbours`` most similar training photos: (aligned crop, caption with class and distance)."""
        from facediag.apply.neighbours import crop_features, nearest

        reference, thumbnails = self.reference()
        indices, distances = nearest(crop_features(self.run, crop[None]), reference.features, self.k_neighbours)
        paths = [str(reference.paths[j]) for j in indices[0]]
        crops, kept = thumbnails.crops(paths, *self.run.crop)
        thumb = {r.path: c for r, c in zip(kept, crops, strict=True)}
        return [(thumb[path], f"{reference.labels[j]} (distance {d:.1f})")
                for path, j, d in zip(paths, indices[0], distances[0], strict=True) if path in thumb]


def blank(saliency: np.ndarray) -> bool:
    """A map with nothing to show: no finite positive value."""
    finite = np.nan_to_num(saliency, nan=0.0, posinf=0.0, neginf=0.0)
    return not bool((finite > 0).any())


def with_landmarks(crop: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The crop with its 68 landmarks as small green dots (none for a centre-crop fallback)."""
    import cv2

    picture = np.ascontiguousarray(crop.copy())
    if np.isfinite(landmarks).all():
        radius = max(1, crop.shape[0] // 120)
        for x, y in np.round(landmarks).astype(int):
            cv2.circle(picture, (int(x), int(y)), radius, (0, 255, 0), -1)
    return picture
