"""Backbones and weight specs: ``create(backbone, weights) -> FaceBackbone``.

``python -m facediag.models`` prints the registry (every backbone x weights pair, its pretraining
dataset, feature dimension, MACs and whether its file is on this machine).
"""

from facediag.models.face_backbone import Architecture, FaceBackbone
from facediag.models.features import extract_features
from facediag.models.flops import count_macs
from facediag.models.registry import (
    ARCHITECTURES,
    BACKBONES,
    FEATURE_LAYERS,
    available_pairs,
    backbone_config,
    create,
    create_from_config,
)
from facediag.models.weights import (
    BadWeightsError,
    UnknownWeightsError,
    WeightsLayoutError,
    WeightsNotFoundError,
    WeightSpec,
    default_cache_dir,
    list_specs,
    load_spec,
    resolve_weight_file,
)

__all__ = [
    "ARCHITECTURES",
    "BACKBONES",
    "FEATURE_LAYERS",
    "Architecture",
    "BadWeightsError",
    "FaceBackbone",
    "UnknownWeightsError",
    "WeightSpec",
    "WeightsLayoutError",
    "WeightsNotFoundError",
    "available_pairs",
    "backbone_config",
    "count_macs",
    "create",
    "create_from_config",
    "default_cache_dir",
    "extract_features",
    "list_specs",
    "load_spec",
    "resolve_weight_file",
]
