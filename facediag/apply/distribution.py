"""Is a photo like the ones the model was trained on? A distance in the run's own feature space, calibrated on
held-out training people.

The rule (``docs/guides/flags.md``):

- features: the run's own (its Predictor's ``features``: DTL2 the frozen backbone's feature layer, DTL1 the fine-tuned
  penultimate layer, DSIFT the visual-word histograms) of the run's training and validation photos, the *reference*;
- distance of a photo: the mean cosine distance to its ``k`` = 5 nearest reference photos, after standardising every
  feature with the reference mean and standard deviation;
- threshold: person-grouped folds inside the reference (``folds`` = 5, scikit-learn GroupKFold on split.csv's
  ``subject``): each held-out person's photos are measured against the other folds' photos (standardised with those
  folds' statistics), so a new person is measured as a new person, never against their own second photo; the
  threshold is the ``quantile`` (0.99) of those held-out distances. A photo farther than the threshold is outside
  the training distribution;
- detector confidence: a face scored by the detector below the 1st percentile of the reference photos' detector
  scores (``preprocess_report.csv``) is a low-confidence detection.

The calibration is made once, on first use, and kept in the run dir (``distribution.json``; recomputed when the
reference features change); a run dir that cannot be written keeps it in memory. Research tool, not a diagnosis.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facediag.core.files import atomic_write

log = logging.getLogger(__name__)

CALIBRATION_FILE = "distribution.json"
K_NEAREST = 5
FOLDS = 5
QUANTILE = 0.99
DETECTOR_QUANTILE = 0.01


@dataclass
class Calibration:
    """The calibrated rule of one run (what ``distribution.json`` holds)."""

    threshold: float  # distances above it: outside the training distribution
    k: int
    quantile: float
    folds: int
    n_reference: int  # training + validation photos
    n_people: int
    held_out: list[float]  # summary of the held-out people's distances: min, median, max
    detector_threshold: float | None  # det_score below it: low detector confidence (None: not known)
    features_digest: str  # sha256 of the reference features (a stale file is recomputed)
    metric: str = "mean cosine distance to the k nearest training photos (standardised features)"


def _unit(rows: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Standardised rows scaled to unit length (cosine distance = 1 - dot product)."""
    z = (np.asarray(rows, np.float64) - mean) / std
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    return z / np.where(norms > 0, norms, 1.0)


def _statistics(reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = reference.mean(axis=0), reference.std(axis=0)
    return mean, np.where(std > 1e-12, std, 1.0)


def knn_distance(query: np.ndarray, reference: np.ndarray, k: int = K_NEAREST) -> np.ndarray:
    """(Q,) mean cosine distance of each query row to its ``k`` nearest reference rows, both standardised with the
    reference's mean and standard deviation."""
    if len(query) == 0:
        return np.zeros(0)
    mean, std = _statistics(reference)
    cosine = 1.0 - _unit(query, mean, std) @ _unit(reference, mean, std).T
    k = min(k, len(reference))
    nearest = np.partition(cosine, k - 1, axis=1)[:, :k]
    return nearest.mean(axis=1)


def held_out_distances(features: np.ndarray, people: np.ndarray, k: int = K_NEAREST, folds: int = FOLDS) -> np.ndarray:
    """Distance of every reference photo to the photos of the other person-grouped folds (GroupKFold)."""
    from sklearn.model_selection import GroupKFold

    n_folds = min(folds, len(np.unique(people)))
    if n_folds < 2:
        raise ValueError(f"calibration needs photos of at least 2 people, got {len(np.unique(people))}")
    distances = np.zeros(len(features))
    for keep, held in GroupKFold(n_splits=n_folds).split(features, groups=people):
        distances[held] = knn_distance(features[held], features[keep], k)
    return distances


def digest(features: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(features, dtype=np.float32).tobytes()).hexdigest()[:16]


def calibrate(features: np.ndarray, people: np.ndarray, det_scores: np.ndarray | None = None,
              k: int = K_NEAREST, folds: int = FOLDS, quantile: float = QUANTILE) -> Calibration:
    """The rule's threshold from the reference features and their people (see the module docstring)."""
    held = held_out_distances(features, people, k, folds)
    detector = None
    if det_scores is not None and np.isfinite(det_scores).any():
        detector = float(np.nanquantile(det_scores, DETECTOR_QUANTILE))
    return Calibration(
        threshold=float(np.quantile(held, quantile)), k=k, quantile=quantile,
        folds=min(folds, len(np.unique(people))), n_reference=len(features), n_people=len(np.unique(people)),
        held_out=[float(held.min()), float(np.median(held)), float(held.max())], detector_threshold=detector,
        features_digest=digest(features),
    )  # fmt: skip


class DistributionCheck:
    """The out-of-distribution check of a ``TrainedRun``: ``distances(features)`` and the calibrated ``threshold``.

    Loads (or makes and keeps) the calibration on first use; thread-safe. A strategy without a feature space
    raises ``facediag.strategies.predictor.CapabilityError`` from :meth:`calibration`.
    """

    def __init__(self, run: Any):
        self.run = run
        self._reference: np.ndarray | None = None
        self._calibration: Calibration | None = None
        self._lock = threading.Lock()

    @property
    def file(self) -> Path:
        return Path(self.run.run_dir) / CALIBRATION_FILE

    def reference(self) -> np.ndarray:
        """The run's training + validation features (computed once and kept in the run dir where none are)."""
        self.calibration()
        assert self._reference is not None
        return self._reference

    def calibration(self) -> Calibration:
        with self._lock:
            if self._calibration is None:
                self._calibration = self._load_or_make()
            return self._calibration

    @property
    def threshold(self) -> float:
        return self.calibration().threshold

    def distances(self, features: np.ndarray) -> np.ndarray:
        """(N,) distance of each photo's features (the run's feature space) to the training photos."""
        calibration = self.calibration()
        assert self._reference is not None
        return knn_distance(features, self._reference, calibration.k)

    def _load_or_make(self) -> Calibration:
        from facediag.apply.neighbours import run_features

        reference = run_features(self.run)
        self._reference = np.asarray(reference.features, np.float64)
        if self.file.is_file():
            try:
                stored = Calibration(**json.loads(self.file.read_text()))
                if stored.features_digest == digest(reference.features):
                    return stored
            except (TypeError, ValueError) as err:
                log.warning("%s: unreadable (%s); calibrating again", self.file, err)
        people, det_scores = self._people_and_detector_scores(reference.paths)
        calibration = calibrate(reference.features, people, det_scores)
        try:
            atomic_write(self.file, lambda handle: handle.write(json.dumps(asdict(calibration), indent=1).encode()))
        except OSError as err:
            log.warning("%s: cannot keep the calibration (%s); it lives in memory", self.file, err)
        return calibration

    def _people_and_detector_scores(self, paths: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """split.csv's subject of each reference photo (its path where missing) and its detector score."""
        run_dir = Path(self.run.run_dir)
        split = pd.read_csv(run_dir / "split.csv", dtype=str)
        subject = dict(zip(split["path"], split["subject"].fillna(split["path"]), strict=True))
        people = np.array([subject.get(str(p), str(p)) for p in paths])
        report = run_dir / "preprocess_report.csv"
        if not report.is_file():
            return people, None
        scores = pd.read_csv(report).drop_duplicates("path").set_index("path")["det_score"]
        return people, np.array([scores.get(str(p), np.nan) for p in paths], dtype=np.float64)
