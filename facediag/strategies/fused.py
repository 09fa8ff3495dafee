"""Fused DTL2: frozen features of several backbone × weights sources, combined by a rule chosen on validation.

Each source has its own face crop and its own per-image feature cache (``Job.feature_cache`` of that
pair: a source's features are computed once, whichever run needs them). The blocks are concatenated in
source order and fused by :mod:`facediag.classifiers.fusion` (block-scaled linear SVM or stacked per-source SVMs),
the rule with the best person-grouped CV accuracy on the training part winning. Writes
``features/<role>.npz`` (the concatenated columns), ``fusion.skops`` (the fitted model: decision values
over the concatenated features), ``fusion_platt.skops`` (probabilities) and, in metrics.json,
``sources`` (per source: backbone, weights, feature layer, crop, columns, MACs, its own CV accuracy),
``fusion_rule`` and ``fusion_cv_accuracy``. MACs and parameters are the sums of the sources'.

A source is either a CNN (``{backbone, weights[, ...]}``) or features computed from the aligned landmarks
the preprocessing already found (``{features: face_geometry[, align: {size, template, padding}]}``,
:mod:`facediag.models.geometry`; no CNN, 0 MACs). ``select_sources``: the inner CV also chooses which sources
take part (:func:`facediag.classifiers.fusion.choose_rule`). A CNN source with ``flip: true`` uses the mean of the
features of each crop and of its horizontal mirror (the mirrored features cached apart; its MACs counted twice); a CNN
source with its own ``align`` is another view of the face by the same network; ``region: lower_face`` (or
``[x0, y0, x1, y1]``, fractions of the aligned crop; :data:`facediag.models.features.REGIONS`) gives the CNN that part
of its crop resized to its input size (its features cached apart; with ``flip`` the region view is mirrored). Such
sources are named apart (:func:`source_name`, e.g. ``efficientnet_lite0@dlib-0.25-224-flip``,
``efficientnet_lite0[lower_face]-flip``); so is a source with another ``feature_layer`` than its backbone's
default (``efficientnet_lite0:stages-flip``: pooled outputs of mid-level stages, ``:bands``: the final map averaged
in three horizontal bands; :mod:`facediag.models.archs.efficientnet_lite`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from threadpoolctl import threadpool_limits
from torch.utils.data import DataLoader

from facediag.classifiers.fusion import RULES, block_slices, choose_rule
from facediag.classifiers.svm import decision_scores
from facediag.data.datamodule import FaceCrops
from facediag.models.config_groups import backbone_option, weights_option
from facediag.models.features import flip_averaged, mirrored_crops, region_box, region_crops, source_name
from facediag.models.geometry import FEATURE_KINDS, landmark_features
from facediag.models.registry import backbone_config
from facediag.scoring.results import prediction_frame
from facediag.strategies.dtl2 import FrozenFeatures, dump_features, feature_trainer, load_svm, platt_scaled
from facediag.strategies.job import Job, crop_of

log = logging.getLogger(__name__)
FUSION_FILE, FUSION_PLATT_FILE = "fusion.skops", "fusion_platt.skops"
VAL_SOURCE = "person-grouped CV accuracy on the training part (chosen fusion rule and C)"
BACKBONE_KEYS, WEIGHTS_KEYS = ("feature_layer", "align"), ("path", "sha256", "download")
VIEW_KEYS = ("flip", "region")  # how a CNN source looks at its crop
LANDMARK_ALIGN = {"size": 150, "template": "dlib", "padding": 0.25}  # the frame landmark features are measured in


def landmark_crop(source: Mapping[str, Any]) -> tuple[int, str, float]:
    """(size, template, padding) of a landmark-features source (its ``align``, default :data:`LANDMARK_ALIGN`);
    unknown keys are refused."""
    unknown = set(source) - {"features", "align"}
    if unknown:
        raise ValueError(f"fused DTL2 source {dict(source)}: unknown keys {sorted(unknown)}")
    align = {**LANDMARK_ALIGN, **dict(source.get("align") or {})}
    return int(align["size"]), str(align["template"]), float(align["padding"])


def view_name(backbone: str, crop: tuple[int, str, float], flip: bool, region: Any = None,
              feature_layer: str | None = None) -> str:
    """The name of a CNN source: the backbone, ``:<feature layer>`` when it is not the backbone's default,
    ``@<template>-<padding>-<size>`` when its crop is not the backbone's own, ``[<region>]`` for a region view (its
    name, or its fractions) and ``-flip`` when flip-averaged (two views of one network stay apart in metrics.json
    and fusion names)."""
    packaged = backbone_config(backbone)
    name = backbone
    if feature_layer is not None and feature_layer != packaged["feature_layer"]:
        name += f":{feature_layer}"
    if crop != crop_of(OmegaConf.create(packaged)):
        name += f"@{crop[1]}-{crop[2]:g}-{crop[0]}"
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


def frozen_features(
    job: Job, backbone: DictConfig, weights: DictConfig, rows: pd.DataFrame, crops: np.ndarray, mirrored: bool = False,
    region: Sequence[float] | None = None,
) -> tuple[np.ndarray, int]:
    """Features of ``rows`` (from the pair's per-image cache; the CNN runs only for misses) and the number
    of images the CNN computed. ``mirrored`` / ``region``: ``crops`` are the mirrored crops / that region view
    (caches of their own)."""
    cache, digests = job.feature_cache(backbone, weights, mirrored, region), rows["sha256"].to_numpy(dtype=str)
    cached = cache.stacked(digests)
    if cached is not None:  # a warm cache: no CNN, no predict pass
        return cached, 0
    module = FrozenFeatures(lambda: job.make_backbone(backbone, weights), cache, digests)
    loader = DataLoader(FaceCrops(crops, job.targets(rows), np.arange(len(rows)), None), **job.loader_options)
    outputs = feature_trainer(job).predict(module, dataloaders=loader, return_predictions=True)
    features = np.concatenate([f for f, _ in outputs])[np.argsort(np.concatenate([r for _, r in outputs]))]
    return features.astype(np.float32), module.cnn_images


class FusedDTL2:
    """DTL2 over several pretraining sources; ``rules`` are the fusion candidates, chosen on validation."""

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
                if source["features"] not in FEATURE_KINDS:
                    raise ValueError(f"fused DTL2 source {dict(source)}: unknown features; choose one of "
                                     f"{sorted(FEATURE_KINDS)}")
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
        from facediag.models.flops import cached_count_macs

        if "features" in source:
            if job.landmarks is None:
                raise RuntimeError("fused DTL2: a landmark-features source needs the job's landmarks")
            crop = landmark_crop(source)
            rows, points = job.landmarks(*crop)
            features = landmark_features(str(source["features"]), points, crop[1])
            return rows, features, {"features": str(source["features"]), "crop": list(crop),
                                    "feature_dim": int(features.shape[1]), "cnn_images": 0, "macs": 0, "params": 0}
        backbone, weights = source_config(job.cfg, source)
        flip, region = bool(source.get("flip", False)), source.get("region")
        box = region_box(region) if region is not None else None
        rows, crops = job.crops(*crop_of(backbone))
        if box is not None:  # the region view: that part of the crop at the input size (cached apart)
            crops = region_crops(crops, box)
        features, cnn_images = frozen_features(job, backbone, weights, rows, crops, region=box)
        if flip:  # the mean over the crop and its mirror: the mirrored features have a cache of their own
            mirrored, mirrored_images = frozen_features(job, backbone, weights, rows, mirrored_crops(crops), True,
                                                        box)
            features, cnn_images = flip_averaged(features, mirrored), cnn_images + mirrored_images
        macs, params = cached_count_macs(str(backbone.name), str(weights.name), len(job.classes),
                                         job.cfg.paths.get("cache_dir"))
        info = {"name": view_name(str(backbone.name), crop_of(backbone), flip, region, backbone.get("feature_layer")),
                "backbone": str(backbone.name),
                "weights": str(weights.name), "feature_layer": backbone.get("feature_layer"),
                "crop": list(crop_of(backbone)), "feature_dim": int(features.shape[1]), "cnn_images": cnn_images,
                "macs": macs * (2 if flip else 1), "params": params}
        if flip:
            info["flip"] = True
        if box is not None:  # facediag.apply.trained_run cuts the same region from each photo's crop
            info["region"] = list(box)
        return rows, features, info

    def run(self, job: Job) -> pd.DataFrame:
        from facediag.classifiers.estimators import save_estimator

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
        save_estimator(choice.estimator, job.out_dir / FUSION_FILE)
        if self.probability:  # stacking's logistic regression already gives probabilities
            with threadpool_limits(1):
                platt = choice.estimator if choice.rule.startswith("stacked") else platt_scaled(
                    choice.estimator, features[fit], y[fit], groups[fit], self.cv_folds, job.seed)
            save_estimator(platt, job.out_dir / FUSION_PLATT_FILE)
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
        return prediction_frame(rows[test], scores, job.classes, self.name)


def load_fusion(run_dir: str | Path, probabilities: bool = False) -> Any:
    """A fused run's model (skops, scikit-learn types only) over its sources' concatenated features."""
    return load_svm(run_dir, FUSION_PLATT_FILE if probabilities else FUSION_FILE)
