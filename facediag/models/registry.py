"""The backbone registry and ``create``: (backbone, weights) -> a verified, loaded FaceBackbone.

A backbone is one module and its specs (timm style). The module defines the network and registers it:

    @register_backbone("alexnet", feature_layers={"fc7": PENULTIMATE})
    @register_architecture("alexnet", head="classifier.6", penultimate=fc7, stages=alexnet_stages)
    def alexnet(num_classes: int) -> nn.Module: ...

``register_architecture`` names a way to build a network (the weight spec's ``arch``: the architecture is a
property of the weight file, e.g. ResNet-50's ImageNet weights need torchvision's layout, its VGGFace2 ones the
Caffe layout); ``register_backbone`` names a backbone, its DTL2 feature layers and its spec: the backbone YAML
(default feature layer, face-crop geometry; package data ``specs/backbones/<name>.yaml``) and its weight specs
(``specs/weights/<name>_<dataset>.yaml``, or a ``weights:`` mapping inside the backbone YAML).

The package's backbones live in :mod:`facediag.models.archs`; other packages add theirs through the entry-point
group ``facediag.backbones`` (a module to import) or by importing their module before composing a config. The
Hydra groups ``backbone`` and ``weights`` and the plain ``method`` presets are generated from this registry
(:mod:`facediag.models.config_groups`).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from facediag.models.face_backbone import Architecture, FaceBackbone, Tap
from facediag.models.weights import (
    NO_WEIGHTS,
    TORCH,
    UnknownWeightsError,
    WeightSpec,
    apply_key_map,
    load_state_dict_strict,
    load_torch_state_dict,
    read_mapping,
    read_spec,
    resolve_weight_file,
)

SPEC_DIR = Path(__file__).resolve().parent / "specs"
ENTRY_POINT_GROUP = "facediag.backbones"

Builder = TypeVar("Builder", bound=Callable[..., nn.Module])


@dataclass(frozen=True)
class Backbone:
    """A registered backbone: its DTL2 feature layers (name -> ``PENULTIMATE``, ``HEAD_OUTPUT`` or a tap of its
    architecture), its backbone YAML and the folder of its weight YAMLs (``<name>_<dataset>.yaml``)."""

    name: str
    feature_layers: Mapping[str, str]
    spec: Path
    weights_dir: Path | None = None

    @cached_property
    def _values(self) -> dict[str, Any]:
        return read_mapping(self.spec, "backbone spec")  # read once: specs are package data

    def definition(self) -> dict[str, Any]:
        """The backbone YAML (name, feature_layer, align), without an inline ``weights`` mapping."""
        values = {key: copy.deepcopy(value) for key, value in self._values.items() if key != "weights"}
        if values.get("name") != self.name:
            raise ValueError(f"{self.spec}: expected a mapping with name: {self.name}")
        if values.get("feature_layer") not in self.feature_layers:
            raise ValueError(f"{self.spec}: feature_layer {values.get('feature_layer')!r} is not one of the "
                             f"registered feature layers {sorted(self.feature_layers)}")
        return values

    @cached_property
    def _weight_specs(self) -> tuple[WeightSpec, ...]:
        specs = []
        if self.weights_dir is not None:
            specs = [read_spec(path) for path in sorted(self.weights_dir.glob(f"{self.name}_*.yaml"))]
        specs += [WeightSpec.from_mapping({"backbone": self.name, "dataset": dataset, **values}, source=self.spec)
                  for dataset, values in (self._values.get("weights") or {}).items()]
        return tuple(sorted((s for s in specs if s.backbone == self.name), key=lambda spec: spec.dataset))

    def weight_specs(self) -> list[WeightSpec]:
        """Every weight spec of this backbone (``none`` included), sorted by dataset."""
        return list(self._weight_specs)


#: every registered backbone by name; every registered architecture by name (a weight spec's ``arch``)
BACKBONES: dict[str, Backbone] = {}
ARCHITECTURES: dict[str, Architecture] = {}


def register_architecture(
    name: str,
    *,
    head: str,
    penultimate: Callable[[nn.Module, Any], Any],
    stages: Callable[[nn.Module], list[list[nn.Module]]],
    taps: Mapping[str, Tap] | None = None,
    read: Callable[[Path], nn.Module] | None = None,
) -> Callable[[Builder], Builder]:
    """Decorator: ``build(num_classes) -> network`` becomes architecture ``name``.

    head: dotted path of the final layer (DTL1 replaces it); penultimate(network, x): the final layer's input;
    stages(network): the trunk's modules stage by stage, input first; taps: further DTL2 feature layers;
    read(file): a network from a weight file that is not a torch state dict (the spec's ``format``).
    """

    def register(build: Builder) -> Builder:
        ARCHITECTURES[name] = Architecture(name, build, penultimate, head, stages, dict(taps or {}), read)
        return build

    return register


def register_backbone(
    name: str,
    *,
    feature_layers: Mapping[str, str],
    spec: str | os.PathLike | None = None,
    weights_dir: str | os.PathLike | None = None,
) -> Callable[[Builder], Builder]:
    """Decorator (beside the backbone's architecture): backbone ``name`` with its DTL2 ``feature_layers``.

    spec: its backbone YAML (default: the package's ``specs/backbones/<name>.yaml``, weights in
    ``specs/weights``); a YAML of another package may list its weight specs inline (``weights: {dataset: spec}``)
    or keep them in ``weights_dir``.
    """
    if spec is None:
        spec, weights_dir = SPEC_DIR / "backbones" / f"{name}.yaml", SPEC_DIR / "weights"
    backbone = Backbone(name, dict(feature_layers), Path(spec).resolve(),
                        None if weights_dir is None else Path(weights_dir).resolve())
    if not backbone.spec.is_file():
        raise FileNotFoundError(f"backbone {name!r}: no spec file {backbone.spec}")

    def register(build: Builder) -> Builder:
        BACKBONES[name] = backbone
        return build

    return register


def load_plugins() -> None:
    """Import the modules of the ``facediag.backbones`` entry points (each registers its backbones)."""
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry.load()
        except Exception as err:
            raise ImportError(f"entry point {ENTRY_POINT_GROUP}:{entry.name} ({entry.value}) failed: {err}") from err


def get_backbone(name: str) -> Backbone:
    """The registered backbone ``name``; ValueError listing the known ones otherwise."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    return BACKBONES[name]


def list_specs() -> list[WeightSpec]:
    """Every weight spec of every registered backbone, sorted by (backbone, dataset)."""
    return sorted((spec for backbone in BACKBONES.values() for spec in backbone.weight_specs()),
                  key=lambda spec: spec.pair)


def load_spec(backbone: str, dataset: str) -> WeightSpec:
    """The spec for (backbone, dataset); UnknownWeightsError lists the valid pairs."""
    specs = BACKBONES[backbone].weight_specs() if backbone in BACKBONES else []
    for spec in specs:
        if spec.dataset == dataset:
            return spec
    pairs = ", ".join(f"{b}/{d}" for b, d in available_pairs())
    raise UnknownWeightsError(
        f"no weights {dataset!r} for backbone {backbone!r}; valid backbone/weights pairs: {pairs}; "
        f"and weights={NO_WEIGHTS} (random init) for any backbone"
    )


def available_pairs() -> list[tuple[str, str]]:
    """Every (backbone, weights) pair with a spec, ``none`` included."""
    return [spec.pair for spec in list_specs()]


def datasets() -> list[str]:
    """Every pretraining dataset some backbone has weights for, ``none`` included (the ``weights`` options)."""
    return sorted({spec.dataset for spec in list_specs()} | {NO_WEIGHTS})


def backbone_config(backbone: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The backbone's definition (name, feature_layer, align), with the non-null values of ``overrides`` (the
    Hydra ``backbone`` group) merged over it."""
    return _merge_set(get_backbone(backbone).definition(), overrides or {})


def _merge_set(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with every non-null leaf of ``overrides`` (nested mappings merged key by key)."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping):
            merged[key] = _merge_set(dict(merged.get(key) or {}), value)
        elif value is not None:
            merged[key] = value
    return merged


def architecture(spec: WeightSpec) -> Architecture:
    if spec.arch not in ARCHITECTURES:
        raise ValueError(f"{spec.source}: unknown arch {spec.arch!r}; known: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[spec.arch]


def build_network(spec: WeightSpec) -> nn.Module:
    """The spec's architecture with random weights and the original head size (no file read)."""
    return architecture(spec).build(spec.num_classes)


def load_network(spec: WeightSpec, file: str | os.PathLike) -> nn.Module:
    """The spec's architecture with the weights of an already verified ``file``."""
    arch = architecture(spec)
    if spec.format != TORCH:
        if arch.read is None:
            raise ValueError(f"{spec.source}: architecture {arch.name} cannot read weight format {spec.format!r}")
        return arch.read(Path(file))
    with torch.device("meta"):  # no random init of weights the file replaces (VGG16: ~5 s on 2 cores)
        net = arch.build(spec.num_classes)
    state_dict = apply_key_map(load_torch_state_dict(file), spec.key_map)
    load_state_dict_strict(net, state_dict, source=f"{file} ({spec.backbone}/{spec.dataset})", assign=True)
    if any(t.is_meta for t in (*net.parameters(), *net.buffers())):  # a tensor no file holds: build it for real
        net = arch.build(spec.num_classes)
        load_state_dict_strict(net, state_dict, source=f"{file} ({spec.backbone}/{spec.dataset})")
    return net


def create(
    backbone: str,
    weights: str | WeightSpec = NO_WEIGHTS,
    path: str | os.PathLike | None = None,
    download: bool = False,
    cache_dir: str | os.PathLike | None = None,
    sha256: str | None = None,
    feature_layer: str | None = None,
    num_classes: int | None = None,
) -> FaceBackbone:
    """A FaceBackbone in eval mode: ``backbone`` with ``weights`` (a pretraining dataset or a WeightSpec).

    The weight file is found at ``path``, else in ``cache_dir`` (default
    ``${FACEDIAG_CACHE_DIR:-~/.cache/facediag}/weights``), else in the package that ships it, else
    downloaded when ``download`` is true, and always checked against ``sha256`` (the user's pin) or the
    spec's. ``num_classes`` attaches a fresh DTL1 head at once.
    """
    config = backbone_config(backbone)
    spec = weights if isinstance(weights, WeightSpec) else load_spec(backbone, weights)
    if spec.backbone != backbone:
        raise ValueError(f"weights spec {spec.source} is for backbone {spec.backbone!r}, not {backbone!r}")
    if spec.needs_file:
        file = resolve_weight_file(spec, path=path, download=download, cache_dir=cache_dir, sha256=sha256)
        net = load_network(spec, file)
    else:
        net = build_network(spec)
    model = FaceBackbone(
        net,
        architecture(spec),
        spec,
        feature_layer=feature_layer or config["feature_layer"],
        feature_layers=BACKBONES[backbone].feature_layers,
        align=config.get("align"),
    )
    if num_classes is not None:
        model.replace_head(num_classes)
    return model.eval()


def _plain(node: Mapping[str, Any]) -> dict[str, Any]:
    """A config node (OmegaConf, interpolations resolved) or a mapping as a plain dict."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)


def create_from_config(
    backbone: Mapping[str, Any], weights: Mapping[str, Any], num_classes: int | None = None
) -> FaceBackbone:
    """``create`` from the Hydra ``backbone`` and ``weights`` groups (``cfg.backbone``, ``cfg.weights``: config
    nodes or plain dicts): the group's non-null backbone keys override the packaged definition."""
    backbone, weights = _plain(backbone), _plain(weights)
    config = backbone_config(backbone["name"], backbone)
    cache_dir = weights.get("cache_dir")
    model = create(
        config["name"],
        weights["name"],
        path=weights.get("path"),
        download=bool(weights.get("download", False)),
        cache_dir=Path(cache_dir) if cache_dir else None,
        sha256=weights.get("sha256"),
        feature_layer=config.get("feature_layer"),
        num_classes=num_classes,
    )
    model.align = dict(config["align"])
    return model
