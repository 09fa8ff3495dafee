"""FaceBackbone: one pretrained network behind one contract (preprocess, features, head, stages).

``preprocess`` turns uint8 RGB crops into the tensor the weights expect; ``features`` gives the DTL2
feature layer (N, D); ``forward`` gives logits of the final layer, which ``replace_head`` swaps for a
fresh ``num_classes`` layer (DTL1). ``head_parameters`` / ``trunk_parameters`` / ``param_groups``
serve a head learning-rate multiplier and ``freeze_stages(k)`` freezes the first k stages (their
batch norms stay in eval mode while training).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from facediag.models.weights import WeightSpec

PENULTIMATE = "penultimate"  # the final layer's input (fc7, pool5, ...)
HEAD_OUTPUT = "head_output"  # the final layer's output (dlib's 128-D descriptor)
FEATURE_SOURCES = (PENULTIMATE, HEAD_OUTPUT)
# NormalizedHead: no feature's std is taken below this share of the features' mean absolute size (dlib's ResNet on
# London faces: the smallest is 0.087, the median 0.16; on a face-blind control's crops: 0.001-0.05)
STD_FLOOR = 0.1


@dataclass(frozen=True)
class Tap:
    """A DTL2 feature layer inside the trunk: features(network, x) -> (N, dim(network))."""

    features: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    dim: Callable[[nn.Module], int]


@dataclass(frozen=True)
class Architecture:
    """How to build a network and where its parts are.

    build(num_classes) -> network; penultimate(network, x) -> (N, D) input of the final layer;
    head: dotted path of the final layer; stages(network) -> modules of each stage, input first;
    taps: further DTL2 feature layers by name (e.g. pooled outputs of several stages);
    read(file) -> network: reads weight files that are not torch state dicts (e.g. dlib's ``.dat``).
    """

    name: str
    build: Callable[[int], nn.Module]
    penultimate: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    head: str
    stages: Callable[[nn.Module], list[list[nn.Module]]]
    taps: Mapping[str, Tap] = field(default_factory=dict)
    read: Callable[[Path], nn.Module] | None = None


class NormalizedHead(nn.Module):
    """Fixed standardisation, then Linear: what DTL2's StandardScaler does, inside the network.

    ``fit(features)`` sets the per-feature mean and std once, from the training images' penultimate
    features (before fine-tuning starts); they are buffers, saved in checkpoints, the same in training
    and inference (no batch statistics: a single image predicts the same as a batch).
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("mean", torch.zeros(in_features))
        self.register_buffer("std", torch.ones(in_features))
        self.register_buffer("fitted", torch.tensor(False))
        self.fc = nn.Linear(in_features, out_features)

    @torch.no_grad()
    def fit(self, features: torch.Tensor) -> NormalizedHead:
        self.mean.copy_(features.mean(dim=0))
        std = features.std(dim=0)
        # dividing by a feature's spread also multiplies the trunk's gradient through it and the feature's response
        # to a trunk step: the trunk's effective learning rate grows as 1 / std**2. Crops that barely differ (a
        # face-blind control's: std 0.001-0.06 of features of mean size 1.16) made that ~200x what faces see (std
        # 0.09-0.38) and fine-tuning diverged; the floor, a share of the features' own size, bounds the gain
        floor = max(0.1 * float(std.mean()), STD_FLOOR * float(features.abs().mean())) + 1e-8
        self.std.copy_(std.clamp_min(floor))
        self.fitted.fill_(True)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc((x - self.mean) / self.std)


class FaceBackbone(nn.Module):
    """A network with its weight spec, preprocessing, DTL2 feature layer and replaceable final layer."""

    def __init__(
        self,
        net: nn.Module,
        arch: Architecture,
        spec: WeightSpec,
        feature_layer: str,
        feature_layers: Mapping[str, str],
        align: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        if feature_layer not in feature_layers:
            raise ValueError(
                f"feature_layer {feature_layer!r} is not available for {spec.backbone}; "
                f"choose one of {sorted(feature_layers)}"
            )
        self.net = net
        self.arch = arch
        self.spec = spec
        self.backbone = spec.backbone
        self.input_size = spec.input_size
        self.align = dict(align or {})
        self.feature_layer = feature_layer
        self._feature_source = feature_layers[feature_layer]
        if self._feature_source not in (*FEATURE_SOURCES, *arch.taps):
            raise ValueError(f"{spec.backbone}: feature layer {feature_layer!r} is {self._feature_source!r}, which "
                             f"architecture {arch.name} does not have")
        self.head_replaced = False
        self.frozen_stages = 0
        to_255 = 255.0 if spec.value_range == "0-1" else 1.0
        mean, std = (torch.tensor(v).view(1, 3, 1, 1) * to_255 for v in (spec.mean, spec.std))
        self.register_buffer("pixel_mean", mean, persistent=False)
        self.register_buffer("pixel_std", std, persistent=False)

    # ------------------------------------------------------------------ input
    def preprocess(
        self,
        images: np.ndarray | torch.Tensor | Sequence[np.ndarray],
        device: torch.device | str | None = None,
        memory_format: torch.memory_format = torch.contiguous_format,
    ) -> torch.Tensor:
        """uint8 RGB (N, H, W, 3) or (H, W, 3) at ``input_size`` -> normalised float (N, 3, H, W).

        Converts to the spec's channel order and value range and subtracts mean / divides by std.
        With ``device`` the uint8 pixels move first (4x less traffic than floats).
        """
        if isinstance(images, np.ndarray):
            pixels = torch.from_numpy(np.ascontiguousarray(images))
        elif isinstance(images, torch.Tensor):
            pixels = images
        else:
            pixels = torch.from_numpy(np.stack([np.asarray(image) for image in images]))
        if pixels.dtype != torch.uint8:
            raise TypeError(f"{self.backbone}: expected uint8 RGB images, got dtype {pixels.dtype}")
        if pixels.ndim == 3:
            pixels = pixels.unsqueeze(0)
        size = self.input_size
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != (size, size, 3):
            raise ValueError(
                f"{self.backbone}/{self.spec.dataset}: expected uint8 RGB images (N, {size}, {size}, 3) "
                f"aligned at the input size, got shape {tuple(pixels.shape)}"
            )
        if device is not None:
            pixels = pixels.to(device, non_blocking=True)
        x = pixels.permute(0, 3, 1, 2).float()
        if self.spec.channel_order == "BGR":
            x = x.flip(1)
        mean = self.pixel_mean.to(x.device)
        std = self.pixel_std.to(x.device)
        return x.sub_(mean).div_(std).contiguous(memory_format=memory_format)

    # ------------------------------------------------------------------ layers
    @property
    def head(self) -> nn.Module:
        """The final layer (DTL1 replaces it)."""
        return self.net.get_submodule(self.arch.head)

    @property
    def head_in_features(self) -> int:
        return int(self.head.in_features)

    @property
    def feature_dim(self) -> int:
        """Width of the DTL2 feature layer."""
        if self._feature_source == HEAD_OUTPUT:
            return int(self.head.out_features)
        if self._feature_source in self.arch.taps:
            return self.arch.taps[self._feature_source].dim(self.net)
        return self.head_in_features

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised input -> (N, D) input of the final layer."""
        return self.arch.penultimate(self.net, x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised input -> (N, feature_dim) DTL2 features (``feature_layer``)."""
        if self._feature_source == PENULTIMATE:
            return self.penultimate(x)
        if self._feature_source in self.arch.taps:
            return self.arch.taps[self._feature_source].features(self.net, x)
        if self.head_replaced:
            raise RuntimeError(
                f"{self.backbone}: feature layer {self.feature_layer!r} is the output of the final layer, "
                "which replace_head() swapped for a classifier; use another feature_layer for DTL1 features"
            )
        return self.head(self.penultimate(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised input -> output of the final layer (logits after ``replace_head``)."""
        return self.head(self.penultimate(x))

    def replace_head(self, num_classes: int, normalize: bool = False) -> FaceBackbone:
        """Swap the final layer for a fresh ``Linear(head_in_features, num_classes)`` (DTL1); returns self.

        ``normalize`` standardises the features before it (``NormalizedHead``, fitted on the training
        features): for penultimate features far from zero mean and unit scale (dlib's ResNet), where
        plain SGD on the new layer stalls.
        """
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        old = self.head
        head = (
            NormalizedHead(self.head_in_features, num_classes)
            if normalize
            else nn.Linear(self.head_in_features, num_classes)
        )
        linear = head.fc if normalize else head
        nn.init.normal_(linear.weight, std=0.01)
        nn.init.zeros_(linear.bias)
        head.to(device=next(old.parameters()).device)
        parent_path, _, name = self.arch.head.rpartition(".")
        parent = self.net.get_submodule(parent_path) if parent_path else self.net
        setattr(parent, name, head)
        self.head_replaced = True
        return self

    # ------------------------------------------------------------------ training helpers
    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())

    def trunk_parameters(self) -> list[nn.Parameter]:
        head = {id(p) for p in self.head.parameters()}
        return [p for p in self.net.parameters() if id(p) not in head]

    def param_groups(self, lr: float, head_lr_mult: float = 1.0) -> list[dict[str, Any]]:
        """Optimizer groups: trainable trunk parameters at ``lr``, the head at ``lr * head_lr_mult``."""
        trunk = [p for p in self.trunk_parameters() if p.requires_grad]
        groups = [{"params": trunk, "lr": lr, "name": "trunk"}] if trunk else []
        groups.append({"params": self.head_parameters(), "lr": lr * head_lr_mult, "name": "head"})
        return groups

    def stages(self) -> list[list[nn.Module]]:
        """The trunk's stages from the input up (stem first), each a list of modules."""
        return self.arch.stages(self.net)

    @property
    def num_stages(self) -> int:
        return len(self.stages())

    def freeze_stages(self, k: int) -> FaceBackbone:
        """Freeze the first ``k`` stages (no gradients, batch norms in eval mode); unfreeze the rest."""
        stages = self.stages()
        if not 0 <= k <= len(stages):
            raise ValueError(f"{self.backbone} has {len(stages)} stages; cannot freeze {k}")
        for index, modules in enumerate(stages):
            for module in modules:
                module.requires_grad_(index >= k)
        self.frozen_stages = k
        return self.train(self.training)

    def _frozen_modules(self) -> Iterator[nn.Module]:
        for modules in self.stages()[: self.frozen_stages]:
            yield from modules

    def train(self, mode: bool = True) -> FaceBackbone:
        super().train(mode)
        for module in self._frozen_modules():
            module.eval()
        return self

    def extra_repr(self) -> str:
        return (
            f"backbone={self.backbone}, weights={self.spec.dataset}, arch={self.arch.name}, "
            f"feature_layer={self.feature_layer} ({self.feature_dim}), input_size={self.input_size}"
        )
