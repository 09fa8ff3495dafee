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
class UploadError(ValueError):
    """An upload that cannot be used (outside the upload folder, a bad zip); the message says why."""


@dataclass
class Upload:
    """An uploaded image: ``name`` as the visitor called it (no folders of this machine), ``path`` its local copy."""

    name: str
    path: str


@dataclass
class PhotoRecord:
    """What the page shows of one photo. ``status``, ``reason`` and ``flags`` (codes, ``flag_words`` their words)
    are :mod:`facediag.apply.flags`'s; ``probabilities`` is empty when nothing was scored; ``crop`` has the landmarks
    drawn; ``overlay`` is the saliency over the crop."""

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
    row: dict[str, Any] = field(default_factory=dict)  # the predictions CSV row (facediag.apply.assess.columns)

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
    """A run dir loaded once and served photo by photo (see the module docstring). The checks and their flags are
    :class:`facediag.apply.assess.Assessor`'s (detection, outside the training distribution, overlap with training
    people); the saliency map's status and fallback are :meth:`facediag.apply.explain.Explainer.explain_crop`'s."""

    def __init__(self, run_dir: str | os.PathLike, show_neighbours: bool = False, k_neighbours: int = 3,
                 max_pixels: int = DEFAULT_MAX_PIXELS):
        from facediag.apply.assess import Assessor
        from facediag.apply.trained_run import TrainedRun

        self.run = TrainedRun(run_dir)
        self.run_dir = Path(run_dir)
        self.classes: list[str] = list(self.run.classes)
        self.assessor = Assessor(self.run)
        self.assessor.preprocessor().max_pixels = int(max_pixels)
        self.show_neighbours, self.k_neighbours = show_neighbours, int(k_neighbours)
        self.lock = threading.Lock()
        self._explainers: dict[str, Any] = {}
        self._reference: Any = None
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
        """Load the models and calibrate the checks now, not on the first visitor's photo: one training photo
        (where it is on this machine) goes through every step, else a blank crop through the model."""
        import pandas as pd

        split = self.run_dir / "split.csv"
        rows = pd.read_csv(split, dtype=str) if split.is_file() else pd.DataFrame(columns=["path", "role"])
        present = [p for p in rows.loc[rows["role"] == "train", "path"] if Path(p).is_file()]
        record = self.analyse(Upload("warm-up", present[0])) if present else None
        if record is None or not record.probabilities:
            size = self.run.crop.size
            blank = np.full((size, size, 3), 128, np.uint8)
            self.run.score_crops(blank[None])
            self.explainer(self.methods[0]).explain_crop(blank, 0)
        if self.show_neighbours:
            self.reference()

    def explainer(self, method: str) -> Any:
        from facediag.apply.explain import Explainer

        if method not in self._explainers:
            self._explainers[method] = Explainer(self.run, method)
        return self._explainers[method]

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
        from facediag.apply.explain import saliency_status
        from facediag.apply.flags import SALIENCY_FALLBACK, flag_words

        photo = self.assessor.assess_image(upload.path, name=upload.name)
        reason = photo.reason.replace(upload.path, upload.name)
        row = {**photo.row(), "path": upload.name, "reason": reason}
        if not photo.scored:
            return PhotoRecord(upload.name, photo.status, reason or "no face found", row=row)
        record = PhotoRecord(upload.name, photo.status, reason, list(photo.flags), photo.flag_words,
                             probabilities=dict(zip(self.classes, map(float, photo.probabilities), strict=True)),
                             top1=photo.top1, crop=with_landmarks(photo.crop, photo.landmarks), row=row)
        if saliency:
            from facediag.apply.saliency import overlay

            target = self.classes.index(photo.top1)
            checked = self.explainer(method).explain_crop(photo.crop, target)
            status, reason, flags = saliency_status(photo, checked)
            record.status, record.reason, record.flags = status, reason.replace(upload.path, upload.name), flags
            record.flag_words = flag_words(flags, {**photo.details, SALIENCY_FALLBACK: checked.reason})
            record.saliency_method = checked.method + (f" (tried {', '.join(checked.tried)})"
                                                       if len(checked.tried) > 1 else "")
            record.overlay = overlay(photo.crop, checked.saliency, photo.landmarks)
        if self.show_neighbours:
            record.neighbours = self.neighbours(photo.crop)
        return record

    def neighbours(self, crop: np.ndarray) -> list[tuple[np.ndarray, str]]:
        """The ``k_neighbours`` most similar training photos: (aligned crop, caption with class and distance)."""
        from facediag.apply.neighbours import crop_features, nearest

        reference, thumbnails = self.reference()
        indices, distances = nearest(crop_features(self.run, crop[None]), reference.features, self.k_neighbours)
        paths = [str(reference.paths[j]) for j in indices[0]]
        faces = thumbnails.faces(paths, self.run.crop)
        thumb = {r.path: c for r, c in zip(faces.kept, faces.crops, strict=True)}
        return [(thumb[path], f"{reference.labels[j]} (distance {d:.1f})")
                for path, j, d in zip(paths, indices[0], distances[0], strict=True) if path in thumb]


def with_landmarks(crop: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The crop with its 68 landmarks as small green dots (none for a centre-crop fallback)."""
    import cv2

    picture = np.ascontiguousarray(crop.copy())
    if np.isfinite(landmarks).all():
        radius = max(1, crop.shape[0] // 120)
        for x, y in np.round(landmarks).astype(int):
            cv2.circle(picture, (int(x), int(y)), radius, (0, 255, 0), -1)
    return picture
