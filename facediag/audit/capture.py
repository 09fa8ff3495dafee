"""Capture cues: how each photo was taken and saved, and how well each cue *alone* tells the classes apart.

When the photos of one class come from another camera, clinic, website or processing path than the others, a CNN can
score well without looking at a face (on the London set, the smiling photos' files are 1.5 x larger and grainier
than the neutral ones: the file size alone gives 0.985 on expression, ``benchmarks/shortcut.py``). ``capture_facts``
reads, per file, its size in kB, its pixel count, the format, the JPEG quality (estimated from the luminance
quantisation table), the EXIF camera and software, and the grain of its background (log variance of the Laplacian in
the four corners, away from the face). ``cue_accuracies`` fits, for each cue on its own, a logistic regression under
person-grouped stratified 5-fold CV and reports its accuracy with a person-bootstrap 95% interval next to chance (the
majority class's share): a cue whose interval lies above chance is a shortcut a model can learn.
``face_blind_accuracy`` asks the same of a CNN that cannot see the face: ImageNet EfficientNet-Lite0 features of the
crops with one fixed face region (the union of every photo's landmark hull) filled, and a linear SVM.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facediag.preprocess.harmonise import face_region, filled

#: per-file facts: numeric cues (log-scaled where noted) and categorical ones
NUMERIC_CUES = ("file_kb", "megapixels", "grain")
CATEGORICAL_CUES = ("format", "jpeg_quality", "camera", "software")
CUES = (*NUMERIC_CUES, *CATEGORICAL_CUES)
#: IJG's standard luminance quantisation table at quality 50 (JPEG Annex K), natural order
_IJG_LUMINANCE = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip
_EXIF_MAKE, _EXIF_MODEL, _EXIF_SOFTWARE = 271, 272, 305


def jpeg_quality(image: Any) -> float | None:
    """The IJG quality (1-100) whose scaled luminance table is closest to the file's; None if not a JPEG."""
    tables = getattr(image, "quantization", None)
    if not tables or 0 not in tables:
        return None
    table = np.asarray(tables[0], dtype=float)
    if table.max() <= 1:  # every step 1: quality 100 (the formula below cannot reach it, steps are at least 1)
        return 100.0
    ratio = float(np.mean(table / np.asarray(_IJG_LUMINANCE, dtype=float))) * 100
    quality = (200 - ratio) / 2 if ratio <= 100 else 5000 / ratio
    return float(min(100, max(1, round(quality))))


def corner_grain(grey: np.ndarray, side: int) -> np.ndarray:
    """(4,) log variance of the Laplacian in the ``side`` px corners of a grey image: its fine texture (sensor
    noise, sharpening, compression) where a portrait has background, not face."""
    import cv2

    grey = np.asarray(grey, dtype=np.float32)
    corners = (grey[:side, :side], grey[:side, -side:], grey[-side:, :side], grey[-side:, -side:])
    return np.array([math.log(float(np.var(cv2.Laplacian(c, cv2.CV_32F))) + 1e-6) for c in corners])


def grain(grey: np.ndarray) -> float:
    """The mean :func:`corner_grain` over corners a tenth of the short side (at least 16 px)."""
    return float(corner_grain(grey, max(16, min(np.shape(grey)) // 10)).mean())


def capture_facts(path: str | Path) -> dict[str, Any]:
    """The capture cues of one readable image file (NaN / empty where a file has none)."""
    from PIL import Image

    path = Path(path)
    with Image.open(path) as image:
        exif = image.getexif()
        facts: dict[str, Any] = {
            "file_kb": path.stat().st_size / 1024,
            "megapixels": image.width * image.height / 1e6,
            "format": image.format or "",
            "jpeg_quality": jpeg_quality(image),
            "camera": " ".join(str(exif.get(k, "")).strip() for k in (_EXIF_MAKE, _EXIF_MODEL)).strip(),
            "software": str(exif.get(_EXIF_SOFTWARE, "")).strip(),
        }
        facts["grain"] = grain(np.asarray(image.convert("L"), dtype=np.float32))
    return facts


def _cue_matrix(values: pd.Series, numeric: bool) -> np.ndarray:
    if numeric:
        column = pd.to_numeric(values, errors="coerce").astype(float)
        column = np.log(column.clip(lower=1e-9)) if values.name in ("file_kb", "megapixels") else column
        return column.fillna(column.median()).to_numpy()[:, None]
    return pd.get_dummies(values.fillna("").astype(str)).to_numpy(dtype=float)


#: the note of a cue that cannot be cross-validated
TOO_FEW_PEOPLE = "fewer than two people in a class: no cross-validation"
#: the note of the face-blind check where a training fold would hold one person of a class (its SVM's C is chosen by
#: a person-grouped CV inside each training fold: two people per class there at least)
TOO_FEW_FOR_NESTED_CV = "fewer than three people in a class: no nested cross-validation of the SVM's C"


def too_few_people(labels: Sequence[Any], groups: Sequence[Any], minimum: int = 2) -> bool:
    """Whether some class has fewer than ``minimum`` people (or there are fewer than two classes): no grouped CV
    then (``minimum`` 3: no CV nested in a grouped CV)."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    classes = np.unique(labels)
    return len(classes) < 2 or min(len(set(groups[labels == c])) for c in classes) < minimum


def face_blind_refusal(labels: Sequence[Any], groups: Sequence[Any]) -> str | None:
    """Why :func:`face_blind_accuracy` cannot be cross-validated on these people, or None when it can."""
    if too_few_people(labels, groups):
        return TOO_FEW_PEOPLE
    return TOO_FEW_FOR_NESTED_CV if too_few_people(labels, groups, minimum=3) else None


def grouped_cv_accuracy(
    X: np.ndarray, y: np.ndarray, groups: np.ndarray, model: str = "logistic", seeds: Sequence[int] = (0,)
) -> tuple[float, float, float]:
    """(accuracy, 95% interval) of person-grouped stratified 5-fold CV, pooled per repeat (one repeat per seed), mean
    over repeats; the interval is a person bootstrap. ``model``: ``logistic`` (standardised logistic regression) or
    ``svm`` (standardised linear SVM, C chosen by an inner person-grouped CV on the training folds)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from facediag.classifiers.fusion import grouped_splits, linear_svm
    from facediag.classifiers.svm import select_svm
    from facediag.scoring.stats import metric_intervals

    y, groups = np.asarray(y), np.asarray(groups, dtype=str)
    predicted = np.zeros((len(seeds), len(y)), dtype=np.int64)
    for repeat, seed in enumerate(seeds):
        for train, test in grouped_splits(y, groups, 5, seed):
            if len(np.unique(y[train])) < 2:  # a class with too few people for this fold: predict the one seen
                predicted[repeat, test] = y[train][0]
            elif model == "svm":
                fit = select_svm(linear_svm(StandardScaler()), X[train], y[train], groups[train],
                                 (0.001, 0.01, 0.1, 1.0, 10.0), 5, seed, "svm__C")  # fmt: skip
                predicted[repeat, test] = fit.estimator.predict(X[test])
            else:
                fit = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X[train], y[train])
                predicted[repeat, test] = fit.predict(X[test])
    n_classes = int(y.max()) + 1
    intervals, _ = metric_intervals(np.tile(y, len(seeds)), np.eye(n_classes)[predicted.ravel()],
                                    1 if n_classes == 2 else None, np.tile(groups, len(seeds)),
                                    np.repeat(np.arange(len(seeds)), len(y)))  # fmt: skip
    low, high = intervals["accuracy"]
    return float(np.mean(predicted == y)), float(low), float(high)


def cue_accuracies(
    table: pd.DataFrame, labels: Sequence[str], groups: Sequence[str], cues: Sequence[str] = CUES, seed: int = 0
) -> pd.DataFrame:
    """Per cue: accuracy [95% CI] of telling the classes from that cue alone (:func:`grouped_cv_accuracy`, logistic
    regression), chance (majority share), the class medians / commonest values, and ``shortcut`` when the interval
    lies above chance."""
    classes, y = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
    chance = float(np.bincount(y).max() / len(y))
    rows = []
    for cue in cues:
        numeric = cue in NUMERIC_CUES
        X = _cue_matrix(table[cue].reset_index(drop=True), numeric)
        summary = "; ".join(
            f"{c}: " + (f"{pd.to_numeric(part, errors='coerce').median():.3g}" if numeric
                        else str(part.fillna("").astype(str).replace("", "-").mode().iloc[0]))
            for c, part in table[cue].reset_index(drop=True).groupby(classes[y])
        )  # fmt: skip
        row = {"cue": cue, "per class (median or commonest)": summary, "chance": round(chance, 3)}
        constant = X.shape[1] == 0 or np.ptp(X, axis=0).max() == 0
        if constant or too_few_people(y, groups):
            rows.append({**row, "accuracy": np.nan, "low": np.nan, "high": np.nan, "shortcut": False,
                         "note": "the same for every file" if constant else TOO_FEW_PEOPLE})  # fmt: skip
            continue
        accuracy, low, high = grouped_cv_accuracy(X, y, np.asarray(groups), "logistic", (seed,))
        rows.append({**row, "accuracy": round(accuracy, 3), "low": round(low, 3), "high": round(high, 3),
                     "shortcut": bool(low > chance), "note": ""})  # fmt: skip
    return pd.DataFrame(rows)


def face_blind_accuracy(
    crops: np.ndarray, points: np.ndarray, labels: Sequence[str], groups: Sequence[str], seeds: Sequence[int] = (0,)
) -> dict[str, Any]:
    """How well ImageNet features tell the classes with the face hidden: EfficientNet-Lite0 (packaged weights) on
    its own crops (VGGFace2 template, padding 0.2, 224 px) with :func:`face_region` filled, a linear SVM,
    :func:`grouped_cv_accuracy`. A score above chance means background, hair, clothing or the photos' grain tell
    the classes."""
    from facediag.models.features import extract_features
    from facediag.models.registry import create

    _, y = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
    chance = float(np.bincount(y).max() / len(y))
    refusal = face_blind_refusal(y, groups)
    if refusal:
        return {"accuracy": np.nan, "low": np.nan, "high": np.nan, "chance": chance, "hidden": np.nan,
                "shortcut": False, "note": refusal}  # fmt: skip
    region = face_region(points, crops.shape[1])
    features = extract_features(create("efficientnet_lite0", "imagenet"), filled(crops, region))
    accuracy, low, high = grouped_cv_accuracy(features, y, np.asarray(groups), "svm", seeds)
    return {"accuracy": accuracy, "low": low, "high": high, "chance": chance, "hidden": float(region.mean()),
            "shortcut": bool(low > chance), "note": ""}
