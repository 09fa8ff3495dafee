"""A toy backbone in one module and one spec (toy_backbone.yaml): what a new backbone needs, nothing more.

Two strided convolutions and a linear head on dlib's 150-pixel face chip, initialised from a fixed seed (its
``none`` weights are the same network in training and in prediction). Importing this module registers it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from facediag.models import PENULTIMATE, register_architecture, register_backbone


class ToyNet(nn.Module):
    def __init__(self, num_classes: int):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.conv1 = nn.Conv2d(3, 8, 5, stride=4)
            self.conv2 = nn.Conv2d(8, 16, 3, stride=2)
            self.fc = nn.Linear(16, num_classes)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pooled(x))


@register_backbone("toy", feature_layers={"pool": PENULTIMATE}, spec=Path(__file__).with_suffix(".yaml"))
@register_architecture("toy", head="fc", penultimate=lambda net, x: net.pooled(x),
                       stages=lambda net: [[net.conv1], [net.conv2]])
def toy(num_classes: int) -> nn.Module:
    return ToyNet(num_classes)
