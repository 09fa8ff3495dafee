"""Fused DTL2: frozen features of several backbone × weights sources, combined by a rule chosen on validation.

Each source has its own face crop and its own per-image feature cache (``Job.feature_cache`` of that
pair: a source's features are computed once, whichever run needs them). The blocks are concatenated in
source order and fused by :mod:`facediag.classifiers.fusion` (block-scaled linear SVM or stacked per-source SVMs),
the rule with the best person-grouped CV accuracy on the training part winning. Writes
``features/<role>.npz`` (the concatenated columns), ``fusion.skops`` (the fitted model: decision values
over the concatenated features), ``fusion_platt.skops`` (probabilities) and, in metrics.json,
``sources`` (per source: backbone, weights, feature layer, crop, columns, MACs, its own CV accuracy),
``fusion_rule`` and ``fusion_cv_accuracy``. MACs and parameters are the sums of the sources'.

A source is either a CNN (``{backbone, weights[, ...]}``) or features computed from the aligned landmarks the
preprocessing already found (``{features: face_geometry[, align: {size, template, padding}]}``,
:mod:`facediag.models.geometry`; no CNN, 0 MACs); ``landmarker: mesh`` measures them on MediaPipe's face mesh instead
(:mod:`facediag.preprocess.face_mesh`, named ``<features>@mesh``), ``dlib_averaged`` on dlib's points averaged over
perturbed starts (:mod:`facediag.preprocess.averaged_landmarks`). ``{features: skin_colour}`` reads the aligned crop
itself: CIELAB statistics of the skin the landmarks outline (:mod:`facediag.models.skin_colour`; no CNN, 0 MACs).
``select_sources``: the inner CV also chooses which sources take part (:func:`facediag.classifiers.fusion.choose_rule`).
A CNN source with ``flip: true`` uses the mean of
the features of each crop and of its horizontal mirror (the mirrored features cached apart; its MACs counted twice); a
CNN source with its own ``align`` is another view of the face by the same network; ``region: lower_face`` (or
``[x0, y0, x1, y1]``, fractions of the aligned crop; :data:`facediag.models.features.REGIONS`) gives the CNN that part
of its crop resized to its input size (its features cached apart; with ``flip`` the region view is mirrored). Such
sources are named apart (:func:`source_name`, e.g. ``efficientnet_lite0@dlib-0.25-224-flip``,
``efficientnet_lite0[lower_face]-flip``); so is a source with another ``feature_layer`` than its backbone's default
(``efficientnet_lite0:stages-flip``: pooled outputs of mid-level stages, ``:bands``: the final map averaged in three
horizontal bands; :mod:`facediag.models.archs.efficientnet_lite`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from threadpoolctl import threadpool_limits

from facediag.classifiers.fusion import RULES, block_slices, choose_rule
from facediag.classifiers.svm import decision_scores
from facediag.core.crop import CropSpec
from facediag.models.config_groups import backbone_option, weights_option
from facediag.models.features import region_box, source_name
from facediag.models.geometry import FEATURE_KINDS
from facediag.models.registry import backbone_config
from facediag.models.skin_colour import KIND as SKIN_COLOUR
from facediag.preprocess.pipeline import LANDMARKERS
from facediag.scoring.results import prediction_frame
from facediag.strategies.dtl2 import dump_features, load_svm, platt_scaled
from facediag.strategies.predictor import Description, Predictor, Scored, grid, softmax
from facediag.strategies.registry import register_strategy

if TYPE_CHECKING:
    from facediag.preprocess.faces import Faces
    from facediag.strategies.job import Job

log = logging.getLogger(__name__)
FUSION_FILE, FUSION_PLATT_FILE = "fusion.skops", "fusion_platt.skops"
VAL_SOURCE = "person-grouped CV accuracy on the training part (chosen fusion rule and C)"
BACKBONE_KEYS, WEIGHTS_KEYS = ("feature_layer", "align"), ("path", "sha256", "download")
VIEW_KEYS = ("flip", "region")  # how a CNN source looks at its crop
#: every ``{features: <kind>}`` a source may name: the landmark features and the skin colour of the crop
MEASURED_KINDS = (*FEATURE_KINDS, SKIN_COLOUR)


def reads_crop(source: Mapping[str, Any]) -> bool:
    """Whether a ``{features: <kind>}`` source reads the crop's pixels (the skin colour), not its landmarks only."""
    return source.get("features") == SKIN_COLOUR


def measured_features(kind: str, faces: Faces, mirror: bool = False) -> np.ndarray:
    """The ``kind`` columns of ``faces`` (crops and landmarks in crop pixels): the skin colour of the crops, else the
    landmark features; ``mirror``: of the mirrored faces (the skin colour reads the same)."""
    from facediag.models.geometry import landmark_features, mirrored
    from facediag.models.skin_colour import skin_colour

    if kind == SKIN_COLOUR:
        return skin_colour(faces.crops, faces.landmarks, faces.crop)
    return landmark_features(kind, mirrored(faces.landmarks) if mirror else faces.landmarks, faces.crop.template)


def landmark_crop(source: Mapping[str, Any]) -> CropSpec:
    """The crop of a landmark-features source, the frame its features are measured in (its ``align``, missing keys
    :data:`~facediag.core.crop.DEFAULT_CROP`'s); unknown keys are refused."""
    unknown = set(source) - {"features", "align", "landmarker"}
    if unknown:
        raise ValueError(f"fused DTL2 source {dict(source)}: unknown keys {sorted(unknown)}")
    if source.get("landmarker") is not None and source["landmarker"] not in LANDMARKERS:
        known = " or ".join(f"{name} ({other.words})" for name, other in LANDMARKERS.items())
        raise ValueError(f"fused DTL2 source {dict(source)}: landmarker must be {known} or left out (the "
                         "preprocessing's own landmarks)")
    return CropSpec.of(dict(source.get("align") or {}))


def landmark_options(source: Mapping[str, Any]) -> dict[str, Any]:
    """The ``faces(...)`` options of a landmark-features source: its ``landmarker`` when it names one."""
    return {"landmarker": str(source["landmarker"])} if source.get("landmarker") else {}


def view_name(backbone: str, crop: CropSpec | Sequence[Any], flip: bool, region: Any = None,
              feature_layer: str | None = None) -> str:
    """The name of a CNN source: the backbone, ``:<feature layer>`` when it is not the backbone's default,
    ``@<template>-<padding>-<size>`` when its crop is not the backbone's own, ``[<region>]`` for a region view (its
    name, or its fractions) and ``-flip`` when flip-averaged (two views of one network stay apart in metrics.json
    and fusion names)."""
    packaged, crop = backbone_config(backbone), CropSpec.of(crop)
    name = backbone
    if feature_layer is not None and feature_layer != packaged["feature_layer"]:
        name += f":{feature_layer}"
    if crop != CropSpec.of(packaged["align"]):
        name += f"@{crop.template}-{crop.padding:g}-{crop.size}"
    if region is not None:
        name += f"[{region}]" if isinstance(region, str) else "[" + ",".join(f"{float(v):g}" for v in region) + "]"
    return name + ("-flip" if flip else "")


def source_config(cfg: DictConfig, source: Mapping[str, Any]) -> tuple[DictConfig, DictConfig]:
    """The `backbone` and `weights` config nodes of one source ``{backbone, weights[, feature_layer, align,
    path, sha256, download]}``: the run's own nodes when the pair is the run's (so ``weights.path=`` on the
    command line applies), else the registry's ``backbone`` and ``weights`` options."""
    name, dataset = str(source["backbone"]), str(source["weights"])
    if name == cfg.backbone.name and dataset == cfg.weights.name:
        backbone = OmegaConf.to_container(cfg.backbone, resolve=True)
        weights = OmegaConf.to_container(cfg.weights, resolve=True)
    else:
        root = OmegaConf.create({"paths": OmegaConf.to_container(cfg.paths, resolve=True),
                                 "backbone": backbone_option(name), "weights": weights_option(dataset)})
        backbone = OmegaConf.to_container(root.backbone, resolve=True)
        weights = OmegaConf.to_container(root.weights, resolve=True)
    unknown = set(source) - {"backbone", "weights", *BACKBONE_KEYS, *WEIGHTS_KEYS, *VIEW_KEYS}
    if unknown:
        raise ValueError(f"fused DTL2 source {dict(source)}: unknown keys {sorted(unknown)}")
    backbone.update({k: source[k] for k in BACKBONE_KEYS if k in source})
    weights.update({k: source[k] for k in WEIGHTS_KEYS if k in source})
    # the group configs only select and override: the packaged definition fills the rest (crop, feature layer)
    return OmegaConf.create(backbone_config(name, backbone)), OmegaConf.create(weights)


class FusedPredictor(Predictor):
    """A fused DTL2 run: one frozen backbone per CNN source (each with its own crop, view, feature layer and the
    weight file pinned in the run's config), the landmark features of the others, and ``fusion.skops`` (+
    ``fusion_platt.skops``) over their features concatenated in ``metrics.json`` ``sources`` order. ``model()`` is
    (backbones, fusion model, Platt model or None). Photos are scored (``score``), not one set of crops."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        #: per source, in column order: what metrics.json records (name, backbone, weights, crop, flip, region, ...)
        self.sources: list[dict[str, Any]] = list(self.summary.get("sources") or [])
        self._fitted: tuple[Any, Any] | None = None  # fit(): (fusion model, Platt model or None), for save()

    @property
    def crop(self) -> CropSpec:
        """The first source's crop (what predict saves beside each photo)."""
        return CropSpec.of(self.sources[0]["crop"])

    def _source_backbone(self, i: int) -> Any:
        """The frozen backbone of CNN source ``i`` as the run recorded it; None for a landmark-features source."""
        from facediag.models import create_from_config

        source = self.sources[i]
        if "features" in source:
            return None
        configured = self.cfg.strategy.get("sources") or []
        pinned = OmegaConf.to_container(configured[i], resolve=True) if i < len(configured) else {}
        weights = {"name": source["weights"], "cache_dir": self.cfg.weights.get("cache_dir")}
        weights.update({k: pinned[k] for k in ("path", "sha256", "download") if k in pinned})
        crop = CropSpec.of(source["crop"])
        backbone = {"name": source["backbone"], "feature_layer": source.get("feature_layer"),
                    "align": {"size": crop.size, "template": crop.template, "padding": crop.padding}}
        return create_from_config(backbone, weights).eval()

    def _load_model(self) -> tuple[list[Any], Any, Any]:
        platt = self.run_dir / FUSION_PLATT_FILE
        return ([self._source_backbone(i) for i in range(len(self.sources))], load_svm(self.run_dir, FUSION_FILE),
                load_svm(self.run_dir, FUSION_PLATT_FILE) if platt.is_file() else None)

    def save(self, run_dir: str | os.PathLike) -> None:
        from facediag.classifiers.estimators import save_estimator

        fusion, platt = self._fitted if self._fitted is not None else self.model()[1:]
        save_estimator(fusion, Path(run_dir) / FUSION_FILE)
        if platt is not None:
            save_estimator(platt, Path(run_dir) / FUSION_PLATT_FILE)

    def score_crops(self, crops: np.ndarray, tta: str | None = None,
                    progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        raise ValueError(f"{self.run_dir}: a fused run needs each source's own crop: score photos (score()), "
                         "not one set of crops")

    def score(self, preprocessor: Any, paths: Sequence[str], tta: str | None = None,
              progress: bool = False) -> Scored:
        """Every source's crop and features, concatenated in the run's column order, into its model."""
        from facediag.models.features import extract_features, flip_averaged, mirrored_crops, region_crops

        paths = list(paths)
        per_source, first = [], None
        for source in self.sources:
            faces = preprocessor.faces(paths, CropSpec.of(source["crop"]), landmarks="features" in source,
                                       **landmark_options(source))
            if first is None:
                first = faces
            elif faces.paths != first.paths:  # a crop that failed for one source only
                raise RuntimeError(f"fused run {self.run_dir}: source {source_name(source)} got crops for other images")
            # a features source keeps its faces (aligned landmarks in its crop's pixels, the crops), a CNN its crops
            # (or the region of them it was trained on, as FusedDTL2 cuts it)
            if "features" in source:
                per_source.append(faces)
            else:
                per_source.append(region_crops(faces.crops, source["region"]) if source.get("region") else faces.crops)
        assert first is not None
        results, stacked = list(first.results), first.crops
        if not len(first):
            empty = np.zeros((0, len(self.classes)))
            return Scored([], stacked, empty, empty, results)
        backbones, fusion, platt = self.model()
        computed: dict[tuple[int, bool], np.ndarray] = {}

        def features_of(i: int, flip: bool) -> np.ndarray:
            source, net, data = self.sources[i], backbones[i], per_source[i]
            if "features" in source:
                return measured_features(str(source["features"]), data, mirror=flip)
            averaged = bool(source.get("flip"))  # flip-averaged as in training
            flip = flip and not averaged  # mirroring the photo leaves a flip-averaged feature as it is: compute once
            if (i, flip) not in computed:
                features = extract_features(net, mirrored_crops(data) if flip else data, batch_size=self.batch_size)
                if averaged:
                    mirror = extract_features(net, mirrored_crops(data), batch_size=self.batch_size)
                    features = flip_averaged(features, mirror)
                computed[(i, flip)] = features
            return computed[(i, flip)]

        scores, probabilities = [], []
        for flip in ([False, True] if tta == "flip" else [False]):
            features = np.hstack([features_of(i, flip) for i in range(len(self.sources))])
            scores.append(decision_scores(fusion, features, len(self.classes)))
            probabilities.append(platt.predict_proba(features) if platt is not None else softmax(scores[-1]))
        return Scored(first.paths, stacked, np.mean(scores, axis=0), np.mean(probabilities, axis=0), results)

    def describe(self) -> Description:
        s = self.cfg.strategy
        views = []
        for source in self.sources:
            crop = CropSpec.of(source["crop"])
            if "features" in source:
                by = f" ({LANDMARKERS[source['landmarker']].words})" if source.get("landmarker") else ""
                what = "CIELAB skin colour" if reads_crop(source) else "landmark features"
                views.append(f"{source_name(source)} ({what}{by} measured on the {crop} aligned face)")
                continue
            extra = [f"feature layer {source['feature_layer']}"] if source.get("feature_layer") else []
            if source.get("region"):
                extra.append("region [" + ", ".join(f"{float(v):g}" for v in source["region"]) + "] of the crop")
            if source.get("flip"):
                extra.append("features averaged with the mirrored crop's")
            what = ", ".join([f"{source['backbone']} pretrained on {source['weights']}, frozen", *extra])
            views.append(f"{source_name(source)} ({what})")
        rule = self.summary.get("fusion_rule")
        chosen = f" (chosen: {rule})" if rule else ""
        model = (f"fused DTL2 over {len(self.sources)} sources: " + "; ".join(views)
                 + f"; the fusion rule chosen among {{{', '.join(s.get('rules') or [])}}}{chosen} and linear SVM C "
                 f"from {grid(s.get('C_grid'))} by {s.get('cv_folds')}-fold person-grouped CV on the training part"
                 + (", the sources taking part chosen there too" if s.get("select_sources") else ""))
        crops = {source_name(source): CropSpec.of(source["crop"]) for source in self.sources}
        return Description(self.name, f"{self.summary.get('backbone')} / {self.summary.get('weights')} / {self.name}",
                           model, crops, self.summary.get("backbone"), self.summary.get("weights"))


@register_strategy("dtl2_fused", predictor=FusedPredictor)
class FusedDTL2:
    """DTL2 over several pretraining sources; ``rules`` are the fusion candidates, chosen on validation."""

    uses_backbone = True
    val_score_is_accuracy = True  # its val_score is a grouped-CV accuracy (runs before val_accuracy)

    def __init__(
        self,
        name: str = "dtl2_fused",
        sources: Sequence[Mapping[str, Any]] = (
            {"backbone": "dlib_resnet", "weights": "dlib_faces"},
            {"backbone": "efficientnet_lite0", "weights": "imagenet"},
        ),
        rules: Sequence[str] = ("block_scaled", "stacked"),
        C_grid: Sequence[float] = (0.001, 0.01, 0.1, 1.0, 10.0),
        cv_folds: int = 5,
        probability: bool = True,
        select_sources: bool = False,
    ):
        if len(sources) < 2:
            raise ValueError(f"fused DTL2 needs at least two sources, got {list(sources)}")
        for source in sources:
            if "features" in source:
                landmark_crop(source)
                if source["features"] not in MEASURED_KINDS:
                    raise ValueError(f"fused DTL2 source {dict(source)}: unknown features; choose one of "
                                     f"{sorted(MEASURED_KINDS)}")
            elif not {"backbone", "weights"} <= set(source):
                raise ValueError(f"fused DTL2 source {dict(source)}: give backbone and weights, or features")
            elif not isinstance(source.get("flip", False), bool):
                raise ValueError(f"fused DTL2 source {dict(source)}: flip must be true or false")
            elif source.get("region") is not None:
                try:
                    region_box(source["region"])
                except ValueError as err:
                    raise ValueError(f"fused DTL2 source {dict(source)}: {err}") from None
        unknown = sorted(set(rules) - set(RULES))
        if unknown or not rules:
            raise ValueError(f"strategy.rules must be among {RULES}, got {list(rules)}")
        self.name, self.sources, self.rules = name, [dict(s) for s in sources], list(rules)
        self.C_grid, self.cv_folds, self.probability = list(C_grid), cv_folds, probability
        self.select_sources = bool(select_sources)

    def source_features(self, job: Job, source: Mapping[str, Any]) -> tuple[pd.DataFrame, np.ndarray, dict[str, Any]]:
        """(rows, features, what metrics.json records) of one source."""
        from facediag.models.features import flip_averaged, mirrored_crops, region_crops
        from facediag.models.flops import cached_count_macs
        from facediag.strategies.frozen import frozen_features

        if "features" in source:
            crop = landmark_crop(source)
            faces = job.faces(crop, crops=reads_crop(source), landmarks=True, **landmark_options(source))
            rows = faces.rows
            features = measured_features(str(source["features"]), faces)
            info = {"features": str(source["features"]), "crop": list(crop), "feature_dim": int(features.shape[1]),
                    "cnn_images": 0, "macs": 0, "params": 0}
            if source.get("landmarker"):  # named apart from the same features of the preprocessing's landmarks
                info.update(landmarker=str(source["landmarker"]), name=f"{source['features']}@{source['landmarker']}")
            return rows, features, info
        backbone, weights = source_config(job.cfg, source)
        flip, region = bool(source.get("flip", False)), source.get("region")
        box = region_box(region) if region is not None else None
        crop = CropSpec.of(backbone.align)
        faces = job.faces(crop)
        rows, crops = faces.rows, faces.crops
        if box is not None:  # the region view: that part of the crop at the input size (cached apart)
            crops = region_crops(crops, box)
        features, cnn_images = frozen_features(job, backbone, weights, rows, crops, region=box)
        if flip:  # the mean over the crop and its mirror: the mirrored features have a cache of their own
            mirrored, mirrored_images = frozen_features(job, backbone, weights, rows, mirrored_crops(crops), True,
                                                        box)
            features, cnn_images = flip_averaged(features, mirrored), cnn_images + mirrored_images
        macs, params = cached_count_macs(str(backbone.name), str(weights.name), len(job.classes),
                                         job.cfg.paths.get("cache_dir"))
        info = {"name": view_name(str(backbone.name), crop, flip, region, backbone.get("feature_layer")),
                "backbone": str(backbone.name),
                "weights": str(weights.name), "feature_layer": backbone.get("feature_layer"),
                "crop": list(crop), "feature_dim": int(features.shape[1]), "cnn_images": cnn_images,
                "macs": macs * (2 if flip else 1), "params": params}
        if flip:
            info["flip"] = True
        if box is not None:  # facediag.apply.trained_run cuts the same region from each photo's crop
            info["region"] = list(box)
        return rows, features, info

    def fit(self, job: Job) -> FusedPredictor:
        started = time.perf_counter()
        blocks, infos, rows = [], [], None
        for source in self.sources:
            source_rows, features, info = self.source_features(job, source)
            if rows is not None and not source_rows["path"].equals(rows["path"]):
                raise RuntimeError(f"fused DTL2: source {source} got crops for other images than the first source")
            rows = source_rows
            blocks.append(features)
            infos.append(info)
        assert rows is not None
        features = np.hstack(blocks)
        sizes = [b.shape[1] for b in blocks]
        for info, columns in zip(infos, block_slices(sizes), strict=True):
            info["columns"] = [columns.start, columns.stop]
        dump_features(job.out_dir / "features", rows, features)
        fit = rows["role"].isin(["train", "val"]).to_numpy()
        test = (rows["role"] == "test").to_numpy()
        y, groups = job.targets(rows), rows["subject"].to_numpy(dtype=str)
        fusion_started = time.perf_counter()
        with threadpool_limits(1):  # BLAS threads on busy cores slowed the stacking's logistic regressions ~3x
            choice = choose_rule(features[fit], y[fit], groups[fit], sizes, self.rules, self.C_grid,
                                 self.cv_folds, job.seed, self.select_sources, [source_name(i) for i in infos])
        log.info("fused DTL2: rule %s (grouped CV accuracy %s)", choice.rule, choice.cv_accuracy)
        platt = None
        if self.probability:  # stacking's logistic regression already gives probabilities
            with threadpool_limits(1):
                platt = choice.estimator if choice.rule.startswith("stacked") else platt_scaled(
                    choice.estimator, features[fit], y[fit], groups[fit], self.cv_folds, job.seed)
        for info, C, accuracy in zip(infos, choice.source_C, choice.source_cv_accuracy, strict=True):
            info.update(svm_C=C, cv_accuracy=accuracy)
        job.info.update(
            backbone="+".join(source_name(i) for i in infos),
            weights="+".join(i["weights"] for i in infos if "weights" in i),
            macs=sum(i["macs"] for i in infos),
            params=sum(i["params"] for i in infos),
            sources=infos,
            fusion_rule=choice.rule,
            fusion_sources=[source_name(infos[i]) for i in choice.chosen_sources],
            fusion_cv_accuracy=choice.cv_accuracy,
            svm_C=choice.C,
            val_score=choice.cv_accuracy[choice.rule],
            val_accuracy=choice.cv_accuracy[choice.rule],  # comparable with DTL2's (evaluation.compare)
            val_source=VAL_SOURCE,
            feature_dim=int(features.shape[1]),
            cnn_images=sum(i["cnn_images"] for i in infos),
            fusion_s=round(time.perf_counter() - fusion_started, 2),
            features_s=round(fusion_started - started, 2),
        )
        scores = decision_scores(choice.estimator, features[test], len(job.classes))
        predictor = FusedPredictor.fitted(job, None, variant=self.name, sources=infos, backbone=job.info["backbone"],
                                          weights=job.info["weights"], fusion_rule=choice.rule)
        predictor._fitted = (choice.estimator, platt)
        predictor.predictions = prediction_frame(rows[test], scores, job.classes, self.name)
        return predictor


def load_fusion(run_dir: str | Path, probabilities: bool = False) -> Any:
    """A fused run's model (skops, scikit-learn types only) over its sources' concatenated features."""
    return load_svm(run_dir, FUSION_PLATT_FILE if probabilities else FUSION_FILE)
