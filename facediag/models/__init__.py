"""Backbones and weight specs: ``create(backbone, weights) -> FaceBackbone``.

A backbone is one module and its spec: ``@register_backbone`` / ``@register_architecture`` beside the network
(the package's in :mod:`facediag.models.archs`, others through the ``facediag.backbones`` entry points), its
YAML in ``specs/`` (:mod:`facediag.models.registry`). ``python -m facediag.models`` prints the registry (every
backbone x weights pair, its pretraining dataset, feature dimension, MACs and whether its file is on this machine).
"""

from facediag.models import archs  # importing registers the package's backbones
from facediag.models.face_backbone import HEAD_OUTPUT, PENULTIMATE, Architecture, FaceBackbone, Tap
from facediag.models.features import extract_features
from facediag.models.registry import (
    ARCHITECTURES,
    BACKBONES,
    Backbone,
    available_pairs,
    backbone_config,
    create,
    create_from_config,
    datasets,
    get_backbone,
    list_specs,
    load_plugins,
    load_spec,
    register_architecture,
    register_backbone,
)
from facediag.models.weights import (
    BadWeightsError,
    UnknownWeightsError,
    WeightsLayoutError,
    WeightsNotFoundError,
    WeightSpec,
    default_cache_dir,
    resolve_weight_file,
)

load_plugins()

__all__ = [
    "ARCHITECTURES",
    "BACKBONES",
    "HEAD_OUTPUT",
    "PENULTIMATE",
    "Architecture",
    "Backbone",
    "BadWeightsError",
    "FaceBackbone",
    "Tap",
    "UnknownWeightsError",
    "WeightSpec",
    "WeightsLayoutError",
    "WeightsNotFoundError",
    "archs",
    "available_pairs",
    "backbone_config",
    "count_macs",
    "create",
    "create_from_config",
    "datasets",
    "default_cache_dir",
    "extract_features",
    "get_backbone",
    "list_specs",
    "load_spec",
    "register_architecture",
    "register_backbone",
    "resolve_weight_file",
]


def __getattr__(name: str):
    """``count_macs`` is imported on first use: ptflops pulls in torchvision (not needed to apply a run)."""
    if name == "count_macs":
        from facediag.models.flops import count_macs

        return count_macs
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
