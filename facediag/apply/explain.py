"""`python -m facediag.explain <photo|folder> ... run=<dir> [method=gradcam|occlusion] [target=<class>] [out=<dir>]`.

For each photo: the aligned crop the model saw, a saliency map of the predicted class (or ``target``)
and an overlay. Grad-CAM for DTL1 / DTL2 runs (default), occlusion sensitivity for every strategy
(DSIFT's default; ``window=<px>`` sets its square, stride half of it). Output per photo, in ``out``
(default ``<run>/explain``):

- ``<stem>_crop.png``: the aligned crop (uint8 RGB)
- ``<stem>_saliency.npy``: float32 (crop height, crop width), larger = more important
- ``<stem>_landmarks.npy``: float32 (68, 2), the landmarks in crop pixels (x, y); NaN for a centre-crop fallback
- ``<stem>_overlay.png``: the saliency as a heat map over the crop, landmarks as dots

plus ``explain.csv`` (one row per photo: status, reason, flags, predicted class, explained class, the method whose
map was written and the methods tried, scores). The photo's flags are predict's (:mod:`facediag.apply.flags`). A
saliency map that shows nothing (NaN, all zeros, constant, no positive value:
:func:`facediag.apply.saliency.blank_reason`) is never ``ok``: a blank Grad-CAM map is replaced by occlusion's
(flag ``saliency_fallback``, ``tried`` ``gradcam;occlusion``, the reason says why Grad-CAM was blank); a map still
blank has status ``blank_saliency`` and the reason. A photo without a face, or unreadable, is reported and skipped.
Research tool, not a diagnosis.

For one crop (the app): ``Explainer(run).explain_crop(crop, target)`` → :class:`SaliencyResult`.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facediag.apply.flags import SALIENCY_FALLBACK, flag_words, join, status_and_reason
from facediag.apply.saliency import (
    METHODS,
    blank_reason,
    class_score_module,
    gradcam,
    occlusion,
    overlay,
)
from facediag.core.status import BLANK_SALIENCY, FLAGGED, OK

USAGE = (
    "usage: python -m facediag.explain <photo|folder|glob> [...] run=<run dir> "
    "[method=gradcam|occlusion] [target=<class>] [window=<px>] [out=<folder>]"
)
OPTIONS = {"run", "method", "target", "window", "out"}


@dataclass
class SaliencyResult:
    """One saliency map and whether it shows anything: ``status`` ok or blank_saliency (facediag.core.status),
    ``reason`` why (a blank first method and the fallback taken, or why the map is blank), ``tried`` the methods
    in order, ``method`` the one whose map this is."""

    saliency: np.ndarray  # (H, W) float32, larger = more important
    method: str
    target: int  # the explained class index
    status: str = OK
    reason: str = ""
    tried: list[str] = field(default_factory=list)

    @property
    def fallback(self) -> bool:
        """Whether the map is a fallback method's (the first one tried was blank)."""
        return len(self.tried) > 1 and self.status == OK


@dataclass
class Explained:
    """Saliency of the photos that got a crop (``paths``); ``photos`` has one assessed photo per input
    (facediag.apply.assess.PhotoResult: status, reason, flags, scores, crop, landmarks)."""

    paths: list[str]
    crops: np.ndarray  # (K, H, W, 3) uint8
    landmarks: np.ndarray  # (K, 68, 2) crop pixels
    saliency: np.ndarray  # (K, H, W) float32
    scores: np.ndarray  # (K, C) the run's scores
    targets: np.ndarray  # (K,) explained class index
    method: str
    photos: list[Any]
    maps: list[SaliencyResult] = field(default_factory=list)  # (K,) each map's status and method


class Explainer:
    """Saliency maps of a ``TrainedRun``: Grad-CAM through its CNN, or occlusion through ``run.score_crops``."""

    def __init__(self, run: Any, method: str | None = None, window: int | None = None):
        self.run = run
        self.window = window  # occlusion square (stride half); None: facediag.apply.saliency.occlusion_window
        cnn = run.predictor.has_cnn  # the strategy's Predictor says whether a CNN is there to back-propagate through
        self.method = method or ("gradcam" if cnn else "occlusion")
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {METHODS}")
        if self.method == "gradcam" and not cnn:
            raise ValueError(f"Grad-CAM needs a CNN run (dtl1 / dtl2), not {run.strategy}: use method=occlusion")
        self._cnn: Any = None
        self._lock = threading.RLock()  # Grad-CAM hooks the shared module: one map at a time

    def cnn(self) -> Any:
        """The run's normalised-image → class-score torch module (its Predictor's ``class_score_module``)."""
        if self._cnn is None:
            self._cnn = class_score_module(self.run)
        return self._cnn

    def scores(self, crops: np.ndarray) -> np.ndarray:
        """The run's own scores of aligned crops (DTL1 softmax, DTL2 / DSIFT SVM decision values)."""
        return self.run.score_crops(crops)[0]

    def saliency(self, crops: np.ndarray, targets: Sequence[int], method: str | None = None) -> np.ndarray:
        """(N, H, W) float32 maps of class ``targets[i]`` for each crop (``method`` default the explainer's)."""
        if (method or self.method) == "gradcam":
            with self._lock:
                return gradcam(self.cnn(), crops, targets)
        return occlusion(self.scores, crops, targets, self.window, self.window // 2 if self.window else None)

    def checked(self, crops: np.ndarray, targets: Sequence[int]) -> list[SaliencyResult]:
        """One map per crop with its status: a blank map of the explainer's method is replaced by occlusion's
        (the fallback and why recorded); a map still blank has status blank_saliency and the reason."""
        maps = self.saliency(crops, targets) if len(crops) else np.zeros((0, *crops.shape[1:3]), np.float32)
        results = []
        for saliency, target in zip(maps, targets, strict=True):
            why = blank_reason(saliency)
            results.append(SaliencyResult(saliency, self.method, int(target), BLANK_SALIENCY if why else OK,
                                          f"{self.method} map blank: {why}" if why else "", [self.method]))
        blank = [i for i, r in enumerate(results) if r.status == BLANK_SALIENCY and self.method != "occlusion"]
        if blank:
            again = self.saliency(crops[blank], [int(targets[i]) for i in blank], "occlusion")
            for i, saliency in zip(blank, again, strict=True):
                first, why = results[i], blank_reason(saliency)
                first.tried.append("occlusion")
                if why:
                    first.reason += f"; occlusion map blank too: {why}"
                    first.saliency = np.nan_to_num(first.saliency).astype(np.float32)
                else:
                    first.saliency, first.method, first.status = saliency, "occlusion", OK
                    first.reason += "; occlusion shown instead"
        return results

    def explain_crop(self, crop: np.ndarray, target: int | str | None = None) -> SaliencyResult:
        """The checked saliency map of one aligned uint8 crop (H, W, 3) for class ``target`` (an index or a class
        name; default the predicted class)."""
        if target is None:
            index = int(self.scores(crop[None])[0].argmax())
        else:
            index = self.target_index(target) if isinstance(target, str) else int(target)
        return self.checked(crop[None], [index])[0]

    def target_index(self, target: str | None) -> int | None:
        if target is None:
            return None
        if target not in self.run.classes:
            raise ValueError(f"target={target!r} is not a class of this run; classes: {self.run.classes}")
        return self.run.classes.index(target)

    def explain(self, paths: Sequence[str], target: str | None = None, assessor: Any = None) -> Explained:
        """Preprocess ``paths`` as the run did, score and check them (``assessor``, default a new
        facediag.apply.assess.Assessor) and explain the predicted class (or ``target``)."""
        from facediag.apply.assess import Assessor

        photos = (assessor or Assessor(self.run)).assess_paths([str(p) for p in paths])
        kept = [photo for photo in photos if photo.scored]
        size = self.run.crop.size
        crops = np.stack([p.crop for p in kept]) if kept else np.zeros((0, size, size, 3), np.uint8)
        landmarks = np.stack([p.landmarks for p in kept]) if kept else np.zeros((0, 68, 2), np.float32)
        scores = np.stack([p.scores for p in kept]) if kept else np.zeros((0, len(self.run.classes)))
        fixed = self.target_index(target)
        targets = np.full(len(crops), fixed) if fixed is not None else scores.argmax(axis=1)
        maps = self.checked(crops, targets)
        saliency = np.stack([m.saliency for m in maps]) if maps else np.zeros((0, size, size), np.float32)
        return Explained([p.path for p in kept], crops, landmarks, saliency, scores, targets, self.method, photos,
                         maps)


def unique_stems(paths: Sequence[str]) -> dict[str, str]:
    """path → output stem; a repeated file name gets its parent folder's name in front."""
    stems: dict[str, str] = {}
    used: set[str] = set()
    for path in paths:
        stem = Path(path).stem
        if stem in used:
            stem = f"{Path(path).parent.name}_{stem}"
        while stem in used:
            stem += "_"
        used.add(stem)
        stems[path] = stem
    return stems


def write_outputs(explained: Explained, out_dir: Path, classes: Sequence[str]) -> list[dict[str, Any]]:
    """Write the per-photo contract files; return one summary row per photo (refused ones included)."""
    from PIL import Image

    out_dir.mkdir(parents=True, exist_ok=True)
    row = {path: i for i, path in enumerate(explained.paths)}
    stems = unique_stems([p.path for p in explained.photos])
    summary = []
    for photo in explained.photos:
        if photo.path not in row:
            summary.append({"path": photo.path, "status": photo.status, "reason": photo.reason or "no face found"})
            continue
        i, stem = row[photo.path], stems[photo.path]
        status, reason, flags = saliency_status(photo, explained.maps[i])
        Image.fromarray(explained.crops[i]).save(out_dir / f"{stem}_crop.png")
        np.save(out_dir / f"{stem}_saliency.npy", explained.saliency[i].astype(np.float32))
        np.save(out_dir / f"{stem}_landmarks.npy", explained.landmarks[i].astype(np.float32))
        picture = overlay(explained.crops[i], explained.saliency[i], explained.landmarks[i])
        Image.fromarray(picture).save(out_dir / f"{stem}_overlay.png")
        scores = explained.scores[i]
        summary.append({
            "path": photo.path, "status": status, "reason": reason, "flags": join(flags), "stem": stem,
            "predicted": classes[int(scores.argmax())], "explained": classes[int(explained.targets[i])],
            "method": explained.maps[i].method, "tried": join(explained.maps[i].tried),
            **{f"score_{c}": float(s) for c, s in zip(classes, scores, strict=True)},
        })  # fmt: skip
    return summary


def saliency_status(photo: Any, saliency: SaliencyResult) -> tuple[str, str, list[str]]:
    """(status, reason, flags) of an explained photo: a blank map is status blank_saliency whatever the photo's
    flags; a fallback map adds the flag saliency_fallback to the photo's flags."""
    if saliency.status == BLANK_SALIENCY:
        words = "; ".join(part for part in (saliency.reason, photo.reason) if part)
        return BLANK_SALIENCY, words, list(photo.flags)
    if not saliency.fallback:
        return photo.status, photo.reason, list(photo.flags)
    flags = [*photo.flags, SALIENCY_FALLBACK]
    if photo.status in (OK, FLAGGED):
        return (*status_and_reason(OK, "", flags, {**photo.details, SALIENCY_FALLBACK: saliency.reason}), flags)
    words = flag_words([SALIENCY_FALLBACK], {SALIENCY_FALLBACK: saliency.reason})[0]
    return photo.status, f"{photo.reason}; {words}", flags


def parse(argv: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Photos / folders / globs and the ``key=value`` options."""
    from facediag.apply.predict import parse_arguments

    inputs, options = parse_arguments(argv, OPTIONS, USAGE)
    if options.get("method", "gradcam") not in METHODS:
        raise SystemExit(f"{USAGE}\nmethod must be one of {METHODS}, got {options['method']!r}")
    if not options.get("window", "2").isdigit() or int(options.get("window", "2")) < 2:
        raise SystemExit(f"{USAGE}\nwindow must be a whole number of pixels >= 2, got {options['window']!r}")
    return inputs, options


def main(argv: Sequence[str] | None = None) -> int:
    """Explain every photo; exit status 1 when a photo was refused (no face, unreadable)."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import pandas as pd

    from facediag.apply.trained_run import TrainedRun
    from facediag.scoring.results import DISCLAIMER

    inputs, options = parse(sys.argv[1:] if argv is None else argv)
    try:
        run = TrainedRun(options["run"])
        window = int(options["window"]) if "window" in options else None
        explainer = Explainer(run, options.get("method"), window)
        explainer.target_index(options.get("target"))
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(str(err)) from None
    out_dir = Path(options.get("out", Path(options["run"]) / "explain"))
    from facediag.apply.predict import expand

    paths, others = expand(inputs)
    for path, status, reason in others:
        print(f"{path}: skipped ({status}: {reason})")
    explained = explainer.explain(paths, options.get("target"))
    summary = write_outputs(explained, out_dir, run.classes)
    pd.DataFrame(summary).to_csv(out_dir / "explain.csv", index=False)
    print(f"run {run.run_dir} ({run.strategy}), {explainer.method}; {DISCLAIMER}")
    for row in summary:
        if "stem" not in row:
            print(f"{row['path']}: refused ({row['status']}): {row['reason']}")
        else:
            print(f"{row['path']}: predicted {row['predicted']}, saliency of {row['explained']} ({row['method']}) → "
                  f"{out_dir / (row['stem'] + '_overlay.png')}")
            if row["status"] != OK:
                print(f"  {row['status']}: {row['reason']}")
    refused = sum("stem" not in row for row in summary)
    print(f"{len(summary) - refused} explained, {refused} refused; files in {out_dir}\n{DISCLAIMER}")
    return 1 if refused or not summary else 0


if __name__ == "__main__":
    sys.exit(main())
