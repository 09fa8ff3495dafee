"""Caffe-style ResNet-50 and SE-ResNet-50: the VGGFace2 networks (Cao et al. 2018).

Differences from torchvision's ResNet-50 (which is "ResNet v1.5"):

* the stride-2 of a downsampling block sits on its FIRST 1x1 conv (and on the projection), not on
  the 3x3 conv;
* the stem max-pool has no padding and rounds up (``ceil_mode=True``);
* the classifier is a 1x1 convolution 2048 -> 8631 (with bias) on the pooled features;
* SE-ResNet-50 adds squeeze-and-excitation (reduction 16, 1x1 convs with bias) on each residual
  branch before the add.

Loading these weights into torchvision's ResNet-50 runs without error but computes a different
network. Module names follow the published ``*_dag`` layout closely so that the spec's ``key_map`` is
four regex renames, e.g. ``conv3_2_1x1_reduce_bn.weight`` -> ``conv3.2.reduce_bn.weight``
(facediag/models/specs/weights/resnet50_vggface2.yaml).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from facediag.models.face_backbone import PENULTIMATE
from facediag.models.registry import register_architecture, register_backbone

STAGE_BLOCKS = (3, 4, 6, 3)
STAGE_WIDTHS = (64, 128, 256, 512)
EXPANSION = 4
SE_REDUCTION = 16
BN_EPS = 1e-5


class Conv1x1Classifier(nn.Module):
    """A 1x1-conv classifier applied to pooled (N, C) features; stores its weight as (out, in, 1, 1)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features, 1, 1))
        self.bias = nn.Parameter(torch.empty(out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        linear = nn.Linear(self.in_features, self.out_features)
        with torch.no_grad():
            self.weight.copy_(linear.weight[:, :, None, None])
            self.bias.copy_(linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.flatten(1), self.bias)


class CaffeBottleneck(nn.Module):
    """1x1 reduce (stride s) -> 3x3 -> 1x1 increase, each with batch norm; optional SE; projection add."""

    def __init__(self, in_channels: int, width: int, stride: int, squeeze_excite: bool):
        super().__init__()
        out_channels = width * EXPANSION
        self.reduce = nn.Conv2d(in_channels, width, 1, stride, bias=False)
        self.reduce_bn = nn.BatchNorm2d(width, eps=BN_EPS)
        self.conv3x3 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.conv3x3_bn = nn.BatchNorm2d(width, eps=BN_EPS)
        self.increase = nn.Conv2d(width, out_channels, 1, bias=False)
        self.increase_bn = nn.BatchNorm2d(out_channels, eps=BN_EPS)
        self.relu = nn.ReLU(inplace=True)
        self.squeeze_excite = squeeze_excite
        if squeeze_excite:
            self.down = nn.Conv2d(out_channels, out_channels // SE_REDUCTION, 1)
            self.up = nn.Conv2d(out_channels // SE_REDUCTION, out_channels, 1)
        self.has_projection = stride != 1 or in_channels != out_channels
        if self.has_projection:
            self.proj = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)
            self.proj_bn = nn.BatchNorm2d(out_channels, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.reduce_bn(self.reduce(x)))
        out = self.relu(self.conv3x3_bn(self.conv3x3(out)))
        out = self.increase_bn(self.increase(out))
        if self.squeeze_excite:
            gate = F.adaptive_avg_pool2d(out, 1)
            gate = torch.sigmoid(self.up(F.relu(self.down(gate))))
            out = out * gate
        shortcut = self.proj_bn(self.proj(x)) if self.has_projection else x
        return self.relu(out + shortcut)


class CaffeResNet50(nn.Module):
    """VGGFace2 ResNet-50 (``squeeze_excite=False``) or SE-ResNet-50 (``True``), input 224x224 RGB 0-255."""

    def __init__(self, num_classes: int = 8631, squeeze_excite: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.conv1_bn = nn.BatchNorm2d(64, eps=BN_EPS)
        self.relu = nn.ReLU(inplace=True)
        self.pool1 = nn.MaxPool2d(3, 2, padding=0, ceil_mode=True)
        in_channels = 64
        for stage, (blocks, width) in enumerate(zip(STAGE_BLOCKS, STAGE_WIDTHS, strict=True), start=2):
            layers = OrderedDict()
            for index in range(1, blocks + 1):
                stride = 2 if index == 1 and stage > 2 else 1
                layers[str(index)] = CaffeBottleneck(in_channels, width, stride, squeeze_excite)
                in_channels = width * EXPANSION
            self.add_module(f"conv{stage}", nn.Sequential(layers))
        self.feature_dim = in_channels
        self.classifier = Conv1x1Classifier(in_channels, num_classes)

    @property
    def stages(self) -> list[nn.Module]:
        return [self.conv2, self.conv3, self.conv4, self.conv5]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 224, 224) -> (N, 2048) pool5 features (global average of conv5_3)."""
        x = self.pool1(self.relu(self.conv1_bn(self.conv1(x))))
        for stage in self.stages:
            x = stage(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))



# --------------------------------------------------------------------------- registration
def caffe_pool5(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return net.forward_features(x)


def caffe_stages(net: nn.Module) -> list[list[nn.Module]]:
    return [[net.conv1, net.conv1_bn]] + [[stage] for stage in net.stages]


@register_architecture("caffe_resnet50", head="classifier", penultimate=caffe_pool5, stages=caffe_stages)
def caffe_resnet50(num_classes: int) -> nn.Module:
    """The VGGFace2 weights of backbone ``resnet50`` (registered with torchvision's layout)."""
    return CaffeResNet50(num_classes, squeeze_excite=False)


@register_backbone("senet50", feature_layers={"pool5": PENULTIMATE})
@register_architecture("caffe_senet50", head="classifier", penultimate=caffe_pool5, stages=caffe_stages)
def caffe_senet50(num_classes: int) -> nn.Module:
    return CaffeResNet50(num_classes, squeeze_excite=True)
