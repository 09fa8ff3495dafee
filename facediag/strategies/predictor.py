"""What a fitted strategy is: a ``Predictor``, saved into and loaded from a run dir.

``strategy.fit(job)`` returns one (with the test ``predictions`` of the run); ``Predictor.load(run_dir)`` rebuilds it
from what the run dir records (``run_config.yaml``, ``metrics.json`` and the strategy's own model files), never
from defaults. Applying, explaining, the feature neighbours and the methods paragraph use only this interface:

- ``crop``: the aligned crop it scores (the first source's for several); ``score(preprocessor, paths)``,
  ``score_crops(crops)`` → (scores, probabilities);
- ``features(crops)`` / ``stored_features(role)``: its feature space (neighbours, the report's feature map);
- ``has_cnn``, ``torch_module()`` (the CNN), ``class_score_module()`` (normalised images → class scores, Grad-CAM);
- ``describe()``: what ran, in words (the methods paragraph, predict's header).

A subclass defines ``_load_model`` and ``score_batch``, and whichever of the rest it can serve; the defaults say
clearly that a capability is missing. Imports stay light (no Lightning, Hydra or scikit-learn here).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from omegaconf import DictConfig, OmegaConf

from facediag.core.crop import CropSpec
from facediag.scoring.results import RUN_CONFIG

METRICS = "metrics.json"  # facediag.scoring.results.write_results writes it beside RUN_CONFIG
TTA = (None, "none", "flip")


class CapabilityError(ValueError):
    """A run's strategy cannot do what was asked (Grad-CAM without a CNN, neighbours without features)."""


@dataclass
class Scored:
    """Scores of the images that got a face crop; ``results`` has one preprocessing result per input path."""

    paths: list[str]
    crops: np.ndarray
    scores: np.ndarray  # (K, C): DTL1 softmax probabilities, DTL2 / DSIFT SVM decision values
    probabilities: np.ndarray  # (K, C): DTL1 softmax, DTL2 Platt-scaled, DSIFT softmax of the decision values
    results: list[Any]


@dataclass
class FeatureSet:
    """Features of a run's photos with their labels, paths and roles."""

    features: np.ndarray
    labels: np.ndarray
    paths: np.ndarray
    roles: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class Description:
    """What a run's model is, in words: ``summary`` (one line, e.g. ``dlib_resnet / dlib_faces / dtl2``),
    ``model`` (the methods paragraph's clause: pretrained model(s), how they were used, the classifier and how it
    was chosen) and ``crops``: the crop each view of the face had, by source name (``""`` when there is one)."""

    strategy: str
    summary: str
    model: str
    crops: dict[str, CropSpec] = field(default_factory=dict)
    backbone: str | None = None
    weights: str | None = None


def read_run(run_dir: str | os.PathLike) -> tuple[DictConfig, dict[str, Any]]:
    """(``run_config.yaml``, ``metrics.json``) of a finished run dir; a clear error when one is missing."""
    run_dir = Path(run_dir)
    config = run_dir / RUN_CONFIG
    if not config.is_file():
        raise FileNotFoundError(f"{run_dir}: no {RUN_CONFIG}; is this a facediag training run dir?")
    metrics = run_dir / METRICS
    if not metrics.is_file():
        raise FileNotFoundError(f"{run_dir}: no {METRICS}; the run did not finish")
    return OmegaConf.load(config), json.loads(metrics.read_text())


def grid(values: Any) -> str:
    """A C grid in words: ``{0.1, 1, 10}``."""
    return "{" + ", ".join(f"{float(v):g}" for v in values) + "}" if isinstance(values, Sequence) and not \
        isinstance(values, str) else str(values)


def softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


class Predictor:
    """A fitted strategy bound to its run dir (see the module docstring). Models load on first use."""

    #: set by ``register_strategy``: the strategy whose runs this class loads
    strategy_name: ClassVar[str] = ""
    #: whether ``torch_module()`` / ``class_score_module()`` exist (Grad-CAM); otherwise occlusion explains it
    has_cnn: ClassVar[bool] = False

    def __init__(self, run_dir: str | os.PathLike, cfg: DictConfig, summary: dict[str, Any],
                 variant: str | None = None, batch_size: int = 32):
        self.run_dir = Path(run_dir)
        self.cfg = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(cfg)
        self.summary = summary
        self.name = str(self.cfg.strategy.get("name") or self.strategy_name)
        self.classes: list[str] = list(summary["classes"])
        self.positive: str | None = summary.get("positive")
        self.variants: list[str] = list(summary.get("variants") or [summary.get("variant") or self.name])
        self.variant = variant or str(summary.get("variant") or self.variants[0])
        if self.variant not in self.variants:
            raise ValueError(f"{self.run_dir}: no variant {self.variant!r}; this run has {self.variants}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.predictions: Any = None  # fit(): the test predictions frame (facediag.scoring.results)
        self._model: Any = None

    @classmethod
    def load(cls, run_dir: str | os.PathLike, variant: str | None = None, batch_size: int = 32,
             cfg: DictConfig | None = None, summary: dict[str, Any] | None = None) -> Predictor:
        """The predictor of a run dir (its ``run_config.yaml`` and ``metrics.json`` unless given); the model files
        are read on first use."""
        if cfg is None or summary is None:
            read_cfg, read_summary = read_run(run_dir)
            cfg, summary = cfg if cfg is not None else read_cfg, summary if summary is not None else read_summary
        return cls(run_dir, cfg, summary, variant, batch_size)

    @classmethod
    def fitted(cls, job: Any, model: Any, variant: str | None = None, **summary: Any) -> Predictor:
        """A predictor of the run ``job`` is fitting, holding ``model`` (what ``_load_model`` would read back)."""
        recorded = {"classes": list(job.classes), "positive": job.positive, **summary}
        predictor = cls(job.out_dir, job.cfg, recorded, variant)
        predictor._model = model
        return predictor

    # ------------------------------------------------------------------ what a strategy defines

    def save(self, run_dir: str | os.PathLike) -> None:
        """Write the model files into ``run_dir`` (nothing by default: e.g. DTL1's checkpoints are written while
        it trains)."""

    def _load_model(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} cannot read its model back from {self.run_dir}")

    @property
    def crop(self) -> CropSpec:
        """The aligned crop this model scores: the backbone's (``backbone.align`` of the run config)."""
        return CropSpec.of(self.cfg.backbone.align)

    def score_batch(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(scores, probabilities) of one batch of aligned uint8 crops (N, H, W, 3)."""
        raise NotImplementedError

    def features(self, crops: np.ndarray) -> np.ndarray:
        """(N, D) features of aligned crops in the space the classifier works in (feature neighbours)."""
        raise CapabilityError(f"{self.run_dir}: a {self.name} run has no feature space to compare photos in")

    def stored_features(self, role: str) -> FeatureSet | None:
        """The features of the run's ``role`` photos as the run keeps them, or None: ``features/<role>.npz``
        (written by fit: DTL2, fused DTL2), else :meth:`computed_features_file` (written on first use by
        :func:`facediag.apply.neighbours.run_features`)."""
        for path in (self.run_dir / "features" / f"{role}.npz", self.computed_features_file(role)):
            if path.is_file():
                return load_feature_set(path, role)
        return None

    def computed_features_file(self, role: str) -> Path:
        """Where features computed from the run's photos after training are kept
        (``features/<strategy>_<role>.npz``, e.g. DTL1's ``features/dtl1_train.npz``)."""
        return self.run_dir / "features" / f"{self.strategy_name or self.name}_{role}.npz"

    def torch_module(self) -> Any:
        """The CNN (a FaceBackbone in eval mode; ``preprocess(crops)`` makes its input)."""
        raise CapabilityError(f"{self.run_dir}: a {self.name} run has no CNN")

    def class_score_module(self) -> Any:
        """A torch module from ``torch_module().preprocess(crops)`` to the class scores (Grad-CAM)."""
        raise CapabilityError(f"{self.run_dir}: Grad-CAM needs a CNN run, not {self.name}; use method=occlusion")

    def describe(self) -> Description:
        """What ran, in words; subclasses say more (see :class:`Description`)."""
        target = self.cfg.strategy.get("_target_")
        return Description(self.name, f"{self.name} / {self.variant}",
                           f"{self.name} ({target}), variant {self.variant}", {"": self.crop})

    # ------------------------------------------------------------------ shared

    def model(self) -> Any:
        """The fitted model (what ``fit`` built, or ``_load_model`` read from the run dir)."""
        if self._model is None:
            self._model = self._load_model()
        return self._model

    def score_crops(self, crops: np.ndarray, tta: str | None = None,
                    progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(scores, probabilities) of aligned uint8 crops (N, H, W, 3), in batches of ``batch_size``;
        ``tta="flip"`` averages each crop's and its mirror's."""
        if len(crops) == 0:
            empty = np.zeros((0, len(self.classes)))
            return empty, empty
        from facediag.models.features import mirrored_crops

        views = [crops, mirrored_crops(crops)] if tta == "flip" else [crops]
        starts: Any = [(view, i) for view in views for i in range(0, len(crops), self.batch_size)]
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=f"scoring ({self.name})", unit="batch")
        parts = [self.score_batch(view[i : i + self.batch_size]) for view, i in starts]
        scores = np.concatenate([s for s, _ in parts]).reshape(len(views), len(crops), -1).mean(axis=0)
        probabilities = np.concatenate([p for _, p in parts]).reshape(len(views), len(crops), -1).mean(axis=0)
        return scores, probabilities

    def score(self, preprocessor: Any, paths: Sequence[str], tta: str | None = None,
              progress: bool = False) -> Scored:
        """Crop ``paths`` with ``preprocessor`` (one pass: detection, landmarks and crop) and score every crop."""
        faces = preprocessor.faces(list(paths), self.crop)
        scores, probabilities = self.score_crops(faces.crops, tta, progress)
        return Scored(faces.paths, faces.crops, scores, probabilities, list(faces.results))


def load_feature_set(path: Path, role: str) -> FeatureSet:
    """A ``features/*.npz`` of a run (``features``, ``labels``, ``paths``) as the photos of ``role``."""
    stored = np.load(path)
    return FeatureSet(stored["features"], stored["labels"], stored["paths"], np.full(len(stored["paths"]), role))


def load_predictor(run_dir: str | os.PathLike, variant: str | None = None, batch_size: int = 32) -> Predictor:
    """The Predictor of a finished run dir, found through the strategy registry from its ``run_config.yaml``."""
    from facediag.strategies.registry import strategy_class

    cfg, summary = read_run(run_dir)
    try:
        cls = strategy_class(cfg.strategy)
    except ValueError as err:
        raise ValueError(f"{run_dir}: {err}") from None
    return cls.predictor.load(run_dir, variant, batch_size, cfg, summary)
