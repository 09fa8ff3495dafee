"""torchvision's AlexNet, VGG16 (also VGG-Face's layout) and ResNet-50 (its ImageNet weights' layout).

| backbone | DTL2 feature layer | final layer |
|---|---|---|
| alexnet | fc7 (4096, after ReLU) | classifier.6 |
| vgg16 | fc7 (4096, after ReLU) | classifier.6 |
| resnet50 | pool5 (2048) | fc |

torchvision is imported when a network is built (it pulls in torch._dynamo, ~1 s).
"""

from __future__ import annotations

import torch
from torch import nn

from facediag.models.face_backbone import PENULTIMATE
from facediag.models.registry import register_architecture, register_backbone


def fc7(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The input of AlexNet's / VGG16's last fc (after fc7's ReLU and dropout)."""
    x = torch.flatten(net.avgpool(net.features(x)), 1)
    for layer in list(net.classifier)[:-1]:
        x = layer(x)
    return x


def alexnet_stages(net: nn.Module) -> list[list[nn.Module]]:
    return [[net.features[i]] for i in (0, 3, 6, 8, 10)] + [[net.classifier[1]], [net.classifier[4]]]


def vgg16_stages(net: nn.Module) -> list[list[nn.Module]]:
    blocks = ((0, 2), (5, 7), (10, 12, 14), (17, 19, 21), (24, 26, 28))
    convs = [[net.features[i] for i in block] for block in blocks]
    return convs + [[net.classifier[0]], [net.classifier[3]]]


def resnet_pool5(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    x = net.layer4(net.layer3(net.layer2(net.layer1(x))))
    return torch.flatten(net.avgpool(x), 1)


def resnet_stages(net: nn.Module) -> list[list[nn.Module]]:
    return [[net.conv1, net.bn1], [net.layer1], [net.layer2], [net.layer3], [net.layer4]]


@register_backbone("alexnet", feature_layers={"fc7": PENULTIMATE})
@register_architecture("alexnet", head="classifier.6", penultimate=fc7, stages=alexnet_stages)
def alexnet(num_classes: int) -> nn.Module:
    import torchvision

    return torchvision.models.alexnet(num_classes=num_classes)


@register_backbone("vgg16", feature_layers={"fc7": PENULTIMATE})
@register_architecture("vgg16", head="classifier.6", penultimate=fc7, stages=vgg16_stages)
def vgg16(num_classes: int) -> nn.Module:
    import torchvision

    return torchvision.models.vgg16(num_classes=num_classes)


@register_backbone("resnet50", feature_layers={"pool5": PENULTIMATE})
@register_architecture("resnet50", head="fc", penultimate=resnet_pool5, stages=resnet_stages)
def resnet50(num_classes: int) -> nn.Module:
    """torchvision's layout ("ResNet v1.5", stride on the 3x3 conv): ImageNet and random weights; the VGGFace2
    weights of the same backbone need the Caffe layout (:mod:`facediag.models.archs.caffe_resnet`)."""
    import torchvision

    return torchvision.models.resnet50(num_classes=num_classes)
