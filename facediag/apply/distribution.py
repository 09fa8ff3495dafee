"""Is a photo like the ones the model was trained on? A distance in the run's own network, calibrated on held-out
training people.

The rule (``docs/guides/flags.md``):

- features: the activation statistics of the run's CNN (``TrainedRun.torch_module()``: DTL2 the frozen backbone,
  DTL1 the fine-tuned network): the mean and standard deviation of every channel of every stage's output, for the
  run's training and validation photos (the *reference*). A run without a CNN (DSIFT) uses its classifier's
  features (``Predictor.features``). Not the last feature layer: a face-recognition embedding maps a coin or a cat
  onto the face manifold (on the demo run 0.5 % of natural-photo patches lay beyond the 99 % threshold in the
  descriptor space, 100 % in the stage statistics; ``docs/guides/flags.md``);
- distance of a photo: the mean Euclidean distance to its ``k`` = 5 nearest reference photos after standardising
  every feature with the reference mean and standard deviation;
- threshold: person-grouped folds inside the reference (``folds`` = 5, scikit-learn GroupKFold on split.csv's
  ``subject``): each held-out person's photos are measured against the other folds' photos (standardised with those
  folds' statistics), so a new person is measured as a new person, never against their own second photo; the
  threshold is the ``quantile`` (0.99) of those held-out distances. A photo farther than the threshold is outside
  the training distribution;
- detector confidence: a face scored by the detector below the 1st percentile of the reference photos' detector
  scores (``preprocess_report.csv``) is a low-confidence detection.

The reference and the calibration are made once, on first use, and kept in the run dir (``distribution.npz``,
``distribution.json``); a run dir that cannot be written keeps them in memory. Research tool, not a diagnosis.
"""

from __future__ import annotations

import hashlib
import io
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
REFERENCE_FILE = "distribution.npz"
K_NEAREST = 5
FOLDS = 5
QUANTILE = 0.99
DETECTOR_QUANTILE = 0.01
FIT_ROLES = ("train", "val")


@dataclass
class Calibration:
    """The calibrated rule of one run (what ``distribution.json`` holds)."""

    threshold: float  # distances above it: outside the training distribution
    k: int
    quantile: float
    folds: int
    n_reference: int  # training + validation photos
    n_people: int
    held_out: list[float]  # the held-out people's distances: min, median, max
    detector_threshold: float | None  # det_score below it: low detector confidence (None: not known)
    features: str  # what the distance is measured on
    features_digest: str  # sha256 of the reference features (a stale file is recomputed)
    metric: str = "mean Euclidean distance to the k nearest training photos (standardised features)"


def stage_statistics(module: Any, crops: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """(N, 2 x channels of all stages) float32: the mean and standard deviation of every channel of every stage's
    output of a FaceBackbone (``module.stages()``) for uint8 crops. Hooks record only this thread's forward pass."""
    import torch

    stages = module.stages()
    me = threading.get_ident()
    outputs: dict[int, Any] = {}

    def keep(k: int) -> Any:
        def hook(_module: Any, _inputs: Any, output: Any) -> None:
            if threading.get_ident() == me:
                outputs[k] = output

        return hook

    hooks = [modules[-1].register_forward_hook(keep(k)) for k, modules in enumerate(stages)]
    rows = []
    try:
        with torch.no_grad():
            for start in range(0, len(crops), batch_size):
                outputs.clear()
                module.penultimate(module.preprocess(crops[start : start + batch_size]))
                parts = []
                for k in sorted(outputs):
                    out = outputs[k].float()
                    parts += [out.mean(dim=(2, 3)), out.std(dim=(2, 3))]
                rows.append(torch.cat(parts, dim=1).numpy())
    finally:
        for hook in hooks:
            hook.remove()
    return np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, 0), np.float32)


def knn_distance(query: np.ndarray, reference: np.ndarray, k: int = K_NEAREST) -> np.ndarray:
    """(Q,) mean Euclidean distance of each query row to its ``k`` nearest reference rows, both standardised with
    the reference's mean and standard deviation."""
    from scipy.spatial.distance import cdist

    if len(query) == 0:
        return np.zeros(0)
    reference = np.asarray(reference, np.float64)
    mean, std = reference.mean(axis=0), reference.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    distances = cdist((np.asarray(query, np.float64) - mean) / std, (reference - mean) / std)
    k = min(k, len(reference))
    return np.partition(distances, k - 1, axis=1)[:, :k].mean(axis=1)


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


def calibrate(features: np.ndarray, people: np.ndarray, det_scores: np.ndarray | None = None, what: str = "",
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
        features=what, features_digest=digest(features),
    )  # fmt: skip


class DistributionCheck:
    """The out-of-distribution check of a ``TrainedRun``: ``distances(crops)`` and the calibrated ``threshold``.

    Loads (or makes and keeps) the reference and the calibration on first use; thread-safe.
    """

    def __init__(self, run: Any):
        self.run = run
        self._reference: np.ndarray | None = None
        self._calibration: Calibration | None = None
        self._lock = threading.Lock()

    @property
    def uses_cnn(self) -> bool:
        return bool(self.run.predictor.has_cnn)

    @property
    def what(self) -> str:
        return ("per-channel mean and standard deviation of every stage of the run's CNN" if self.uses_cnn
                else "the run's classifier features")

    def features(self, crops: np.ndarray) -> np.ndarray:
        """(N, D) the features the distance is measured on, of aligned uint8 crops."""
        if self.uses_cnn:
            return stage_statistics(self.run.torch_module(), crops, self.run.batch_size)
        return np.asarray(self.run.predictor.features(crops), np.float32)

    def calibration(self) -> Calibration:
        with self._lock:
            if self._calibration is None:
                self._calibration = self._load_or_make()
            return self._calibration

    @property
    def threshold(self) -> float:
        return self.calibration().threshold

    def distances(self, crops: np.ndarray) -> np.ndarray:
        """(N,) distance of each aligned crop to the training photos."""
        calibration = self.calibration()
        assert self._reference is not None
        return knn_distance(self.features(crops), self._reference, calibration.k)

    def _load_or_make(self) -> Calibration:
        run_dir = Path(self.run.run_dir)
        stored_file, calibration_file = run_dir / REFERENCE_FILE, run_dir / CALIBRATION_FILE
        if stored_file.is_file() and calibration_file.is_file():
            try:
                reference = np.load(stored_file)["features"]
                stored = Calibration(**json.loads(calibration_file.read_text()))
                if stored.features_digest == digest(reference):
                    self._reference = reference.astype(np.float64)
                    return stored
            except (OSError, KeyError, TypeError, ValueError) as err:
                log.warning("%s: unreadable (%s); calibrating again", calibration_file, err)
        features, people, det_scores = self._reference_photos()
        calibration = calibrate(features, people, det_scores, self.what)
        self._reference = features.astype(np.float64)
        try:
            buffer = io.BytesIO()
            np.savez_compressed(buffer, features=features, people=people)
            atomic_write(stored_file, lambda handle: handle.write(buffer.getvalue()))
            atomic_write(calibration_file, lambda handle: handle.write(json.dumps(asdict(calibration), indent=1)
                                                                       .encode()))
        except OSError as err:
            log.warning("%s: cannot keep the calibration (%s); it lives in memory", run_dir, err)
        return calibration

    def _reference_photos(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(features, person, detector score) of the run's training and validation photos that have a crop."""
        run_dir = Path(self.run.run_dir)
        split = pd.read_csv(run_dir / "split.csv", dtype=str)
        fit = split[split["role"].isin(FIT_ROLES)]
        faces = self.run.preprocessor(n_workers=1).faces(fit["path"].tolist(), self.run.crop)
        crops, kept = faces.crops, faces.kept
        if not kept:
            raise ValueError(f"{run_dir}: none of the training photos is on this machine; no distance to them")
        subject = dict(zip(fit["path"], fit["subject"].fillna(fit["path"]), strict=True))
        people = np.array([subject[r.path] for r in kept])
        det_scores = np.array([r.det_score for r in kept], dtype=np.float64)
        return self.features(crops), people, det_scores
