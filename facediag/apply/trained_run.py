"""Apply a finished run to new images: the run's preprocessing, crop and model (DTL1, DTL2 or DSIFT).

Everything comes from what the run dir records, never from defaults: ``run_config.yaml`` (preprocessing,
backbone, weights, strategy hyper-parameters) and ``metrics.json`` (classes, the DTL1 checkpoint that
was tested, the DSIFT variants and their model files). Imports stay light: DTL2 and DSIFT runs never
import Lightning, Hydra, matplotlib or scipy.stats (DTL1 needs Lightning to rebuild its module).
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from facediag.scoring.results import RUN_CONFIG

TTA = (None, "none", "flip")
FUSED = "dtl2_fused"


@dataclass
class Scored:
    """Scores of the images that got a face crop; ``results`` has one preprocessing result per input path."""

    paths: list[str]
    crops: np.ndarray
    scores: np.ndarray  # (K, C): DTL1 softmax probabilities, DTL2 / DSIFT SVM decision values
    probabilities: np.ndarray  # (K, C): DTL1 softmax, DTL2 Platt-scaled, DSIFT softmax of the decision values
    results: list[Any]


def build(node: Any) -> Any:
    """Objects from a ``_target_`` config (nested dicts and lists), like hydra.utils.instantiate but without
    importing Hydra (~0.3 s of a one-photo prediction)."""
    if isinstance(node, list):
        return [build(item) for item in node]
    if not isinstance(node, dict):
        return node
    values = {k: build(v) for k, v in node.items() if not k.startswith("_")}
    if "_target_" not in node:
        return values
    module, _, name = str(node["_target_"]).rpartition(".")
    return getattr(importlib.import_module(module), name)(**values)


class TrainedRun:
    """A run dir of `train.py` turned back into a classifier.

    DTL1: the fine-tuned module of the checkpoint that was tested (``metrics.json`` ``checkpoint``),
    rebuilt with its saved hyper-parameters. DTL2: backbone + ``svm_arrays.npz`` (or ``svm.skops`` +
    ``svm_platt.skops`` where the arrays could not reproduce the SVM).
    DSIFT: ``dsift_bow.skops`` + the SVM of ``variant`` (default: the run's first variant, the one at
    the top of metrics.json; ``variants`` lists them). ``tta="flip"`` averages the scores of each crop
    and its horizontal mirror.
    """

    def __init__(
        self, run_dir: str | os.PathLike, variant: str | None = None, tta: str | None = None, batch_size: int = 32
    ):
        self.run_dir = Path(run_dir)
        config = self.run_dir / RUN_CONFIG
        if not config.is_file():
            raise FileNotFoundError(f"{self.run_dir}: no {RUN_CONFIG}; is this a facediag training run dir?")
        self.cfg: DictConfig = OmegaConf.load(config)
        self.strategy = str(self.cfg.strategy.name)
        metrics = self.run_dir / "metrics.json"
        if not metrics.is_file():
            raise FileNotFoundError(f"{self.run_dir}: no metrics.json; the run did not finish")
        self.summary: dict[str, Any] = json.loads(metrics.read_text())
        self.classes: list[str] = list(self.summary["classes"])
        self.positive: str | None = self.summary.get("positive")
        self.variants: list[str] = list(self.summary.get("variants") or [self.summary["variant"]])
        self.variant = variant or str(self.summary.get("variant") or self.variants[0])
        if self.variant not in self.variants:
            raise ValueError(f"{self.run_dir}: no variant {self.variant!r}; this run has {self.variants}")
        if tta not in TTA:
            raise ValueError(f"tta must be one of {[t for t in TTA if t]}, got {tta!r}")
        self.tta = None if tta == "none" else tta
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        # fused DTL2: one backbone per source, each with its own crop (metrics.json ``sources``, in column order)
        self.sources: list[dict[str, Any]] = list(self.summary.get("sources") or []) if self.strategy == FUSED else []
        if self.strategy == "dsift":
            s = self.cfg.strategy
            self.crop = (int(s.crop_size), str(s.template), float(s.padding))
        elif self.sources:
            self.crop = _crop(self.sources[0]["crop"])
        else:
            align = self.cfg.backbone.align
            self.crop = (int(align.size), str(align.template), float(align.padding))
        self._model: Any = None

    @property
    def description(self) -> str:
        """backbone / weights / strategy (variant) in words."""
        if self.strategy == "dsift":
            return f"dense SIFT + BoW / {self.variant}"
        if self.sources:
            return f"{self.summary.get('backbone')} / {self.summary.get('weights')} / {self.strategy}"
        return f"{self.cfg.backbone.name} / {self.cfg.weights.name} / {self.strategy}"

    def preprocessor(
        self, n_workers: int | None = None, cache_dir: str | os.PathLike | None = None, progress: bool = False
    ) -> Any:
        """The run's Preprocessor (its detector, landmarks, alignment and cache; workers, cache and bar as given)."""
        settings = OmegaConf.to_container(self.cfg.preprocess, resolve=True)
        settings.update(n_workers=n_workers, progress=progress)
        if cache_dir is not None:
            settings["cache_dir"] = str(cache_dir)
        return build(settings)

    def _backbone(self) -> Any:
        from facediag.models import create_from_config

        return create_from_config(self.cfg.backbone, self.cfg.weights)

    def checkpoint(self) -> Path:
        """DTL1: the checkpoint the run's test pass used (recorded in metrics.json, relative to the run dir)."""
        recorded = self.summary.get("checkpoint")
        if recorded:
            path = Path(recorded) if Path(recorded).is_absolute() else self.run_dir / recorded
        elif self.summary.get("best_checkpoint"):  # runs before `checkpoint` was recorded: absolute path
            old = Path(self.summary["best_checkpoint"])
            path = old if old.is_file() else self.run_dir / "checkpoints" / old.name
        else:
            raise FileNotFoundError(f"{self.run_dir}/metrics.json records no tested checkpoint")
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the checkpoint this run tested is missing")
        return path

    def model(self) -> Any:
        """DTL1: the FineTune module (eval); DTL2: (backbone, svm, Platt svm or None), the SVMs as scikit-learn
        objects or as ``facediag.classifiers.linear_svm.LinearSVM`` (same scores); DSIFT: (vocabulary, svm)."""
        if self._model is None:
            if self.strategy == "dtl1":
                from facediag.strategies.dtl1 import FineTune

                module = FineTune.load_from_checkpoint(
                    self.checkpoint(), map_location="cpu", weights_only=True, backbone=self._backbone()
                )
                self._model = module.eval()
            elif self.strategy == "dtl2":
                self._model = (self._backbone().eval(), *self._svm())
            elif self.strategy == "dsift":
                from facediag.classifiers.estimators import load_estimator

                files = self.summary.get("model_files") or {}
                vocabulary = self.run_dir / str(self.summary.get("vocabulary", "dsift_bow.skops"))
                svm = self.run_dir / str(files.get(self.variant, f"{self.variant}.skops"))
                self._model = (load_estimator(vocabulary), load_estimator(svm))
            elif self.strategy == FUSED:
                from facediag.classifiers.estimators import load_estimator

                platt = self.run_dir / "fusion_platt.skops"
                self._model = (
                    [self._source_backbone(i) for i in range(len(self.sources))],
                    load_estimator(self.run_dir / "fusion.skops"),
                    load_estimator(platt) if platt.is_file() else None,
                )
            else:
                raise ValueError(f"{self.run_dir}: unknown strategy {self.strategy!r}")
        return self._model

    def _svm(self) -> tuple[Any, Any]:
        """DTL2: (svm, Platt-scaled svm or None). ``svm_arrays.npz`` (numpy only, written by runs that can) when
        present, else the skops files written instead."""
        from facediag.classifiers.linear_svm import ARRAYS_FILE, SVM_FILE, SVM_PLATT_FILE, LinearSVM

        arrays = self.run_dir / ARRAYS_FILE
        if arrays.is_file():
            svm = LinearSVM(arrays)
            return svm, svm if svm.has_probabilities else None
        from facediag.classifiers.estimators import load_estimator

        platt = self.run_dir / SVM_PLATT_FILE
        return load_estimator(self.run_dir / SVM_FILE), load_estimator(platt) if platt.is_file() else None

    def _source_backbone(self, i: int) -> Any:
        """Fused DTL2: the frozen backbone of source ``i`` as the run recorded it (pair, feature layer, crop,
        and the weight file pinned in the run's config); None for a landmark-features source."""
        from facediag.models import create_from_config

        source = self.sources[i]
        if "features" in source:
            return None
        size, template, padding = _crop(source["crop"])
        configured = self.cfg.strategy.get("sources") or []
        pinned = OmegaConf.to_container(configured[i], resolve=True) if i < len(configured) else {}
        weights = {"name": source["weights"], "cache_dir": self.cfg.weights.get("cache_dir")}
        weights.update({k: pinned[k] for k in ("path", "sha256", "download") if k in pinned})
        backbone = {"name": source["backbone"], "feature_layer": source.get("feature_layer"),
                    "align": {"size": size, "template": template, "padding": padding}}
        return create_from_config(backbone, weights).eval()

    def torch_module(self) -> torch.nn.Module:
        """The CNN as a torch module (FaceBackbone, eval mode): DTL1 with its fine-tuned head, DTL2 the frozen
        feature extractor. Its ``preprocess(crops)`` turns uint8 crops into the input tensor."""
        if self.strategy == "dtl1":
            return self.model().net
        if self.strategy == "dtl2":
            return self.model()[0]
        raise ValueError(f"{self.run_dir}: a {self.strategy} run has no CNN")

    @torch.no_grad()
    def _score_batch(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from facediag.classifiers.svm import decision_scores
        from facediag.models import extract_features

        if self.strategy == "dtl1":
            probabilities = torch.softmax(self.model()(torch.from_numpy(crops)).float(), dim=1).numpy()
            return probabilities.astype(np.float64), probabilities.astype(np.float64)
        if self.strategy == "dtl2":
            backbone, svm, platt = self.model()
            features = extract_features(backbone, crops, batch_size=self.batch_size)
            scores = decision_scores(svm, features, len(self.classes))
            return scores, platt.predict_proba(features) if platt is not None else _softmax(scores)
        from threadpoolctl import threadpool_limits

        vocabulary, svm = self.model()
        with threadpool_limits(1):  # as in training: k-means' tiny OpenMP steps crawl with threads on busy cores
            scores = decision_scores(svm, vocabulary.transform(crops), len(self.classes))
        return scores, _softmax(scores)

    def score_crops(self, crops: np.ndarray, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(scores, probabilities) of aligned uint8 crops (N, H, W, 3), in batches of ``batch_size``."""
        if self.sources:
            raise ValueError(f"{self.run_dir}: a fused run needs each source's own crop: score photos (score()), "
                             "not one set of crops")
        if len(crops) == 0:
            empty = np.zeros((0, len(self.classes)))
            return empty, empty
        from facediag.models.features import mirrored_crops

        views = [crops, mirrored_crops(crops)] if self.tta == "flip" else [crops]
        starts = [(view, i) for view in views for i in range(0, len(crops), self.batch_size)]
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=f"scoring ({self.strategy})", unit="batch")
        parts = [self._score_batch(view[i : i + self.batch_size]) for view, i in starts]
        scores = np.concatenate([s for s, _ in parts]).reshape(len(views), len(crops), -1).mean(axis=0)
        probabilities = np.concatenate([p for _, p in parts]).reshape(len(views), len(crops), -1).mean(axis=0)
        return scores, probabilities

    def score(
        self,
        paths: Sequence[str | os.PathLike],
        n_workers: int | None = 1,
        cache_dir: str | os.PathLike | None = None,
        progress: bool = False,
    ) -> Scored:
        """Preprocess ``paths`` as the run did (one pass: detection, landmarks and crop) and score every crop."""
        preprocessor = self.preprocessor(n_workers, cache_dir, progress)
        paths = [os.fspath(p) for p in paths]
        from facediag.preprocess.pipeline import stack_crops

        if self.sources:
            return self._score_fused(preprocessor, paths)
        results, crops = preprocessor.results_and_crops(paths, *self.crop)
        stacked, kept = stack_crops(results, crops, self.crop[0])
        scores, probabilities = self.score_crops(stacked, progress=progress)
        return Scored([r.path for r in kept], stacked, scores, probabilities, results)

    def _score_fused(self, preprocessor: Any, paths: list[str]) -> Scored:
        """Fused DTL2: every source's crop and features, concatenated in the run's column order, into its model."""
        from facediag.classifiers.svm import decision_scores
        from facediag.models.features import region_crops, source_name
        from facediag.models.geometry import crop_landmarks, landmark_features, mirrored
        from facediag.preprocess.pipeline import stack_crops

        per_source, first = [], None
        for source in self.sources:
            crop = _crop(source["crop"])
            results, crops = preprocessor.results_and_crops(paths, *crop)
            stacked, kept = stack_crops(results, crops, crop[0])
            if first is None:
                first = (results, kept, stacked)
            elif [r.path for r in kept] != [r.path for r in first[1]]:
                raise RuntimeError(f"fused run {self.run_dir}: source {source_name(source)} got crops for other images")
            # a landmark-features source keeps the aligned landmarks (in its crop's pixels), a CNN its crops (or the
            # region of them it was trained on, as facediag.strategies.fused cuts it)
            if "features" in source:
                per_source.append(crop_landmarks(preprocessor, kept, *crop))
            else:
                per_source.append(region_crops(stacked, source["region"]) if source.get("region") else stacked)
        assert first is not None
        results, kept, stacked = first
        if not kept:
            empty = np.zeros((0, len(self.classes)))
            return Scored([], stacked, empty, empty, results)
        from facediag.models.features import extract_features, flip_averaged, mirrored_crops

        backbones, fusion, platt = self.model()
        computed: dict[tuple[int, bool], np.ndarray] = {}

        def features_of(i: int, flip: bool) -> np.ndarray:
            source, net, data = self.sources[i], backbones[i], per_source[i]
            if "features" in source:
                points = mirrored(data) if flip else data
                return landmark_features(str(source["features"]), points, str(source["crop"][1]))
            averaged = bool(source.get("flip"))  # flip-averaged as in training (facediag.strategies.fused)
            flip = flip and not averaged  # mirroring the photo leaves a flip-averaged feature as it is: compute once
            if (i, flip) not in computed:
                features = extract_features(net, mirrored_crops(data) if flip else data, batch_size=self.batch_size)
                if averaged:
                    mirror = extract_features(net, mirrored_crops(data), batch_size=self.batch_size)
                    features = flip_averaged(features, mirror)
                computed[(i, flip)] = features
            return computed[(i, flip)]

        scores, probabilities = [], []
        for flip in ([False, True] if self.tta == "flip" else [False]):
            features = np.hstack([features_of(i, flip) for i in range(len(self.sources))])
            scores.append(decision_scores(fusion, features, len(self.classes)))
            probabilities.append(platt.predict_proba(features) if platt is not None else _softmax(scores[-1]))
        return Scored([r.path for r in kept], stacked, np.mean(scores, axis=0), np.mean(probabilities, axis=0), results)


def _crop(recorded: Sequence[Any]) -> tuple[int, str, float]:
    """(size, template, padding) of a recorded crop."""
    size, template, padding = recorded
    return int(size), str(template), float(padding)


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
