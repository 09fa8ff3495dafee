"""`python -m facediag.explain <photo|folder> ... run=<dir> [method=gradcam|occlusion] [target=<class>] [out=<dir>]`.

For each photo: the aligned crop the model saw, a saliency map of the predicted class (or ``target``)
and an overlay. Grad-CAM for DTL1 / DTL2 runs (default), occlusion sensitivity for every strategy
(DSIFT's default; ``window=<px>`` sets its square, stride half of it). Output per photo, in ``out``
(default ``<run>/explain``):

- ``<stem>_crop.png``: the aligned crop (uint8 RGB)
- ``<stem>_saliency.npy``: float32 (crop height, crop width), larger = more important
- ``<stem>_landmarks.npy``: float32 (68, 2), the landmarks in crop pixels (x, y); NaN for a centre-crop fallback
- ``<stem>_overlay.png``: the saliency as a heat map over the crop, landmarks as dots

plus ``explain.csv`` (one row per photo: status, predicted class, explained class, scores). A photo without
a face, or unreadable, is reported and skipped. Research tool, not a diagnosis.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facediag.apply.saliency import (
    METHODS,
    class_score_module,
    gradcam,
    occlusion,
    overlay,
)

USAGE = (
    "usage: python -m facediag.explain <photo|folder|glob> [...] run=<run dir> "
    "[method=gradcam|occlusion] [target=<class>] [window=<px>] [out=<folder>]"
)
OPTIONS = {"run", "method", "target", "window", "out"}


@dataclass
class Explained:
    """Saliency of the photos that got a crop (``paths``); ``results`` has one preprocessing result per input."""

    paths: list[str]
    crops: np.ndarray  # (K, H, W, 3) uint8
    landmarks: np.ndarray  # (K, 68, 2) crop pixels
    saliency: np.ndarray  # (K, H, W) float32
    scores: np.ndarray  # (K, C) the run's scores
    targets: np.ndarray  # (K,) explained class index
    method: str
    results: list[Any]


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

    def cnn(self) -> Any:
        """The run's normalised-image → class-score torch module (its Predictor's ``class_score_module``)."""
        if self._cnn is None:
            self._cnn = class_score_module(self.run)
        return self._cnn

    def scores(self, crops: np.ndarray) -> np.ndarray:
        """The run's own scores of aligned crops (DTL1 softmax, DTL2 / DSIFT SVM decision values)."""
        return self.run.score_crops(crops)[0]

    def saliency(self, crops: np.ndarray, targets: Sequence[int]) -> np.ndarray:
        """(N, H, W) float32 maps of class ``targets[i]`` for each crop."""
        if self.method == "gradcam":
            return gradcam(self.cnn(), crops, targets)
        return occlusion(self.scores, crops, targets, self.window, self.window // 2 if self.window else None)

    def target_index(self, target: str | None) -> int | None:
        if target is None:
            return None
        if target not in self.run.classes:
            raise ValueError(f"target={target!r} is not a class of this run; classes: {self.run.classes}")
        return self.run.classes.index(target)

    def explain(self, paths: Sequence[str], target: str | None = None) -> Explained:
        """Preprocess ``paths`` as the run did, score them and explain the predicted class (or ``target``)."""
        preprocessor = self.run.preprocessor()
        faces = preprocessor.faces([str(p) for p in paths], self.run.crop, landmarks=True)
        crops = faces.crops
        scores = self.scores(crops)
        fixed = self.target_index(target)
        targets = np.full(len(crops), fixed) if fixed is not None else scores.argmax(axis=1)
        saliency = self.saliency(crops, targets) if len(crops) else np.zeros((0, *crops.shape[1:3]), np.float32)
        return Explained(faces.paths, crops, faces.landmarks, saliency, scores, targets, self.method,
                         list(faces.results))


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
    stems = unique_stems([r.path for r in explained.results])
    summary = []
    for result in explained.results:
        if result.path not in row:
            reason = result.reason or "no face found"
            summary.append({"path": result.path, "status": result.status, "reason": reason})
            continue
        i, stem = row[result.path], stems[result.path]
        Image.fromarray(explained.crops[i]).save(out_dir / f"{stem}_crop.png")
        np.save(out_dir / f"{stem}_saliency.npy", explained.saliency[i].astype(np.float32))
        np.save(out_dir / f"{stem}_landmarks.npy", explained.landmarks[i].astype(np.float32))
        picture = overlay(explained.crops[i], explained.saliency[i], explained.landmarks[i])
        Image.fromarray(picture).save(out_dir / f"{stem}_overlay.png")
        scores = explained.scores[i]
        summary.append({
            "path": result.path, "status": result.status, "reason": result.reason, "stem": stem,
            "predicted": classes[int(scores.argmax())], "explained": classes[int(explained.targets[i])],
            "method": explained.method, **{f"score_{c}": float(s) for c, s in zip(classes, scores, strict=True)},
        })  # fmt: skip
    return summary


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
            print(f"{row['path']}: predicted {row['predicted']}, saliency of {row['explained']} → "
                  f"{out_dir / (row['stem'] + '_overlay.png')}")
    refused = sum("stem" not in row for row in summary)
    print(f"{len(summary) - refused} explained, {refused} refused; files in {out_dir}\n{DISCLAIMER}")
    return 1 if refused or not summary else 0


if __name__ == "__main__":
    sys.exit(main())
