"""EfficientNet-Lite0 (efficientnet_lite_pytorch): DTL2 feature layers ``pool`` (1280, the final layer's input),
``stages`` (704: globally averaged outputs of MBConv stages 4-7) and ``bands`` (3 x 1280: the final map averaged in
three horizontal bands); DTL1 replaces ``_fc``."""

from __future__ import annotations

import torch
from torch import nn

from facediag.models.face_backbone import PENULTIMATE, Tap
from facediag.models.registry import register_architecture, register_backbone

#: EfficientNet-Lite0 stages (stem 0, MBConv stages 1-7, head conv 8) whose globally averaged outputs make the
#: ``stages`` feature layer: mid- to high-level maps (80 + 112 + 192 + 320 = 704 channels), before the 1x1 head conv
#: that ImageNet's classes shaped most
EFFICIENTNET_TAP_STAGES = (4, 5, 6, 7)
#: horizontal bands of the final 7x7 map averaged apart in the ``bands`` feature layer (3 x 1280): at the
#: backbone's face crop roughly brows and eyes / nose and cheeks / mouth and chin, where global pooling mixes them
EFFICIENTNET_BANDS = 3


def efficientnet_pool(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = torch.flatten(net._avg_pooling(net.extract_features(x)), 1)
    return net._dropout(x)


def efficientnet_stages(net: nn.Module) -> list[list[nn.Module]]:
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


def _stage_outputs(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Outputs of the :data:`EFFICIENTNET_TAP_STAGES` (forward hooks on each stage's last block), in stage order."""
    stages = efficientnet_stages(net)
    outputs: list[torch.Tensor] = []
    hooks = [stages[i][-1].register_forward_hook(lambda _module, _input, output: outputs.append(output))
             for i in EFFICIENTNET_TAP_STAGES]
    try:
        net.extract_features(x)
    finally:
        for hook in hooks:
            hook.remove()
    return outputs


def _stages_pooled(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([output.mean(dim=(2, 3)) for output in _stage_outputs(net, x)], dim=1)


def _stages_dim(net: nn.Module) -> int:
    stages = efficientnet_stages(net)
    return sum(int(stages[i][-1]._project_conv.out_channels) for i in EFFICIENTNET_TAP_STAGES)


def _bands(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    pooled = nn.functional.adaptive_avg_pool2d(net.extract_features(x), (EFFICIENTNET_BANDS, 1))
    return torch.flatten(pooled, 1)


def _bands_dim(net: nn.Module) -> int:
    return EFFICIENTNET_BANDS * int(net._conv_head.out_channels)


EFFICIENTNET_TAPS = {"stages": Tap(_stages_pooled, _stages_dim), "bands": Tap(_bands, _bands_dim)}


@register_backbone("efficientnet_lite0", feature_layers={"pool": PENULTIMATE, "stages": "stages", "bands": "bands"})
@register_architecture("efficientnet_lite0", head="_fc", penultimate=efficientnet_pool, stages=efficientnet_stages,
                       taps=EFFICIENTNET_TAPS)
def efficientnet_lite0(num_classes: int) -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name("efficientnet-lite0", num_classes=num_classes)
