"""The backbone registry and ``create``: (backbone, weights) -> a verified, loaded FaceBackbone.

Backbones (package data ``facediag/models/specs/backbones/<name>.yaml``: default feature layer and the
face-alignment geometry of its crops; the Hydra group ``backbone`` selects one and overrides its keys)
and their architectures:

| backbone | architecture(s) | DTL2 feature layer | final layer |
|---|---|---|---|
| alexnet | torchvision AlexNet | fc7 (4096) | classifier.6 |
| vgg16 | torchvision VGG16 (also VGG-Face's layout) | fc7 (4096) | classifier.6 |
| resnet50 | torchvision ResNet-50 (imagenet, none); | pool5 (2048) | fc |
| | Caffe ResNet-50 (vggface2, ms1m_vggface2) | pool5 (2048) | classifier |
| senet50 | Caffe SE-ResNet-50 | pool5 (2048) | classifier |
| dlib_resnet | dlib's face ResNet (parsed from its .dat) | descriptor (128) or pooled (256) | fc |
| efficientnet_lite0 | EfficientNet-Lite0 | pool (1280), stages (704), bands (3840) | _fc |

The architecture is a property of the weight file (its spec's ``arch``), not of the backbone name:
ResNet-50 ImageNet weights need torchvision's layout, the VGGFace2 ones the Caffe layout.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from facediag.models.caffe_resnet import CaffeResNet50
from facediag.models.face_backbone import HEAD_OUTPUT, PENULTIMATE, Architecture, FaceBackbone, Tap
from facediag.models.weights import (
    WeightSpec,
    apply_key_map,
    list_specs,
    load_spec,
    load_state_dict_strict,
    load_torch_state_dict,
    resolve_weight_file,
)

BACKBONE_DIR = Path(__file__).resolve().parent / "specs" / "backbones"

#: DTL2 feature layers of each backbone: name -> where it is taken (input or output of the final layer).
FEATURE_LAYERS: dict[str, dict[str, str]] = {
    "alexnet": {"fc7": PENULTIMATE},
    "vgg16": {"fc7": PENULTIMATE},
    "resnet50": {"pool5": PENULTIMATE},
    "senet50": {"pool5": PENULTIMATE},
    "dlib_resnet": {"descriptor": HEAD_OUTPUT, "pooled": PENULTIMATE},
    "efficientnet_lite0": {"pool": PENULTIMATE, "stages": "stages", "bands": "bands"},
}
BACKBONES = tuple(FEATURE_LAYERS)


# --------------------------------------------------------------------------- torchvision AlexNet / VGG16
def _fc7(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = torch.flatten(net.avgpool(net.features(x)), 1)
    for layer in list(net.classifier)[:-1]:
        x = layer(x)
    return x


def _alexnet_stages(net: nn.Module) -> list[list[nn.Module]]:
    return [[net.features[i]] for i in (0, 3, 6, 8, 10)] + [[net.classifier[1]], [net.classifier[4]]]


def _vgg16_stages(net: nn.Module) -> list[list[nn.Module]]:
    blocks = ((0, 2), (5, 7), (10, 12, 14), (17, 19, 21), (24, 26, 28))
    convs = [[net.features[i] for i in block] for block in blocks]
    return convs + [[net.classifier[0]], [net.classifier[3]]]


# --------------------------------------------------------------------------- torchvision ResNet-50
def _resnet_pool5(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    x = net.layer4(net.layer3(net.layer2(net.layer1(x))))
    return torch.flatten(net.avgpool(x), 1)


def _resnet_stages(net: nn.Module) -> list[list[nn.Module]]:
    return [[net.conv1, net.bn1], [net.layer1], [net.layer2], [net.layer3], [net.layer4]]


# --------------------------------------------------------------------------- Caffe (SE-)ResNet-50
def _caffe_pool5(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return net.forward_features(x)


def _caffe_stages(net: nn.Module) -> list[list[nn.Module]]:
    return [[net.conv1, net.conv1_bn]] + [[stage] for stage in net.stages]


# --------------------------------------------------------------------------- dlib face ResNet
def _build_dlib(num_classes: int) -> nn.Module:
    from facediag.models.dlib_resnet import DlibFaceResNet

    return DlibFaceResNet(feature_dim=num_classes)


def _dlib_pooled(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return net.pooled(x)


def _dlib_stages(net: nn.Module) -> list[list[nn.Module]]:
    """Stem, then one stage per run of blocks that starts at a downsampling block."""
    stages: list[list[nn.Module]] = [[net.stem]]
    for index, block in enumerate(net.blocks):
        downsamples = block.conv1.stride != (1, 1)
        if index == 0 or downsamples:
            stages.append([])
        stages[-1].append(block)
    return stages


# --------------------------------------------------------------------------- EfficientNet-Lite0
def _build_efficientnet_lite0(num_classes: int) -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name("efficientnet-lite0", num_classes=num_classes)


def _efficientnet_pool(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = torch.flatten(net._avg_pooling(net.extract_features(x)), 1)
    return net._dropout(x)


def _efficientnet_stages(net: nn.Module) -> list[list[nn.Module]]:
    """Stem, the seven MBConv stages (1, 2, 2, 3, 3, 4, 1 blocks for Lite0), the 1x1 head conv.

    A stage starts where the block width changes (every stage's first block changes it).
    """
    stages: list[list[nn.Module]] = [[net._conv_stem, net._bn0]]
    for index, block in enumerate(net._blocks):
        args = block._block_args
        if index == 0 or args.input_filters != args.output_filters:
            stages.append([])
        stages[-1].append(block)
    return stages + [[net._conv_head, net._bn1]]


#: EfficientNet-Lite0 stages (stem 0, MBConv stages 1-7, head conv 8) whose globally averaged outputs make the
#: ``stages`` feature layer: mid- to high-level maps (80 + 112 + 192 + 320 = 704 channels), before the 1x1 head conv
#: that ImageNet's classes shaped most
EFFICIENTNET_TAP_STAGES = (4, 5, 6, 7)
#: horizontal bands of the final 7x7 map averaged apart in the ``bands`` feature layer (3 x 1280): at the
#: backbone's face crop roughly brows and eyes / nose and cheeks / mouth and chin, where global pooling mixes them
EFFICIENTNET_BANDS = 3


def _efficientnet_stage_outputs(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Outputs of the :data:`EFFICIENTNET_TAP_STAGES` (forward hooks on each stage's last block), in stage order."""
    stages = _efficientnet_stages(net)
    outputs: list[torch.Tensor] = []
    hooks = [stages[i][-1].register_forward_hook(lambda _module, _input, output: outputs.append(output))
             for i in EFFICIENTNET_TAP_STAGES]
    try:
        net.extract_features(x)
    finally:
        for hook in hooks:
            hook.remove()
    return outputs


def _efficientnet_stages_pooled(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([output.mean(dim=(2, 3)) for output in _efficientnet_stage_outputs(net, x)], dim=1)


def _efficientnet_stages_dim(net: nn.Module) -> int:
    stages = _efficientnet_stages(net)
    return sum(int(stages[i][-1]._project_conv.out_channels) for i in EFFICIENTNET_TAP_STAGES)


def _efficientnet_bands(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    pooled = nn.functional.adaptive_avg_pool2d(net.extract_features(x), (EFFICIENTNET_BANDS, 1))
    return torch.flatten(pooled, 1)


def _efficientnet_bands_dim(net: nn.Module) -> int:
    return EFFICIENTNET_BANDS * int(net._conv_head.out_channels)


EFFICIENTNET_TAPS = {"stages": Tap(_efficientnet_stages_pooled, _efficientnet_stages_dim),
                     "bands": Tap(_efficientnet_bands, _efficientnet_bands_dim)}


def _build_alexnet(num_classes: int) -> nn.Module:
    import torchvision  # imported on use: torchvision pulls in torch._dynamo (~1 s)

    return torchvision.models.alexnet(num_classes=num_classes)


def _build_vgg16(num_classes: int) -> nn.Module:
    import torchvision  # imported on use: torchvision pulls in torch._dynamo (~1 s)

    return torchvision.models.vgg16(num_classes=num_classes)


def _build_resnet50(num_classes: int) -> nn.Module:
    import torchvision  # imported on use: torchvision pulls in torch._dynamo (~1 s)

    return torchvision.models.resnet50(num_classes=num_classes)


def _build_caffe_resnet50(num_classes: int) -> nn.Module:
    return CaffeResNet50(num_classes, squeeze_excite=False)


def _build_caffe_senet50(num_classes: int) -> nn.Module:
    return CaffeResNet50(num_classes, squeeze_excite=True)


ARCHITECTURES: dict[str, Architecture] = {
    arch.name: arch
    for arch in (
        Architecture("alexnet", _build_alexnet, _fc7, "classifier.6", _alexnet_stages),
        Architecture("vgg16", _build_vgg16, _fc7, "classifier.6", _vgg16_stages),
        Architecture("resnet50", _build_resnet50, _resnet_pool5, "fc", _resnet_stages),
        Architecture("caffe_resnet50", _build_caffe_resnet50, _caffe_pool5, "classifier", _caffe_stages),
        Architecture("caffe_senet50", _build_caffe_senet50, _caffe_pool5, "classifier", _caffe_stages),
        Architecture("dlib_resnet", _build_dlib, _dlib_pooled, "fc", _dlib_stages),
        Architecture("efficientnet_lite0", _build_efficientnet_lite0, _efficientnet_pool, "_fc",
                     _efficientnet_stages, EFFICIENTNET_TAPS),
    )
}


def backbone_config(backbone: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The packaged definition ``specs/backbones/<backbone>.yaml`` (name, feature_layer, align), with the
    non-null values of ``overrides`` (the Hydra ``backbone`` group) merged over it."""
    path = BACKBONE_DIR / f"{backbone}.yaml"
    if backbone not in FEATURE_LAYERS or not path.is_file():
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {list(BACKBONES)}")
    config = yaml.safe_load(path.read_text())
    if not isinstance(config, dict) or config.get("name") != backbone:
        raise ValueError(f"{path}: expected a mapping with name: {backbone}")
    return _merge_set(config, overrides or {})


def _merge_set(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with every non-null leaf of ``overrides`` (nested mappings merged key by key)."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping):
            merged[key] = _merge_set(dict(merged.get(key) or {}), value)
        elif value is not None:
            merged[key] = value
    return merged


def available_pairs() -> list[tuple[str, str]]:
    """Every (backbone, weights) pair with a spec, ``none`` included."""
    return [spec.pair for spec in list_specs()]


def build_network(spec: WeightSpec) -> nn.Module:
    """The spec's architecture with random weights and the original head size (no file read)."""
    if spec.arch not in ARCHITECTURES:
        raise ValueError(f"{spec.source}: unknown arch {spec.arch!r}; known: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[spec.arch].build(spec.num_classes)


def load_network(spec: WeightSpec, file: str | os.PathLike) -> nn.Module:
    """The spec's architecture with the weights of an already verified ``file``."""
    if spec.format == "dlib_dat":
        from facediag.models.dlib_resnet import load_dlib_resnet

        return load_dlib_resnet(file)
    net = build_network(spec)
    state_dict = apply_key_map(load_torch_state_dict(file), spec.key_map)
    load_state_dict_strict(net, state_dict, source=f"{file} ({spec.backbone}/{spec.dataset})")
    return net


def create(
    backbone: str,
    weights: str | WeightSpec = "none",
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
        ARCHITECTURES[spec.arch],
        spec,
        feature_layer=feature_layer or config["feature_layer"],
        feature_layers=FEATURE_LAYERS[backbone],
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
