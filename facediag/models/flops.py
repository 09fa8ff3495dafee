"""MACs and parameters of an adapted backbone (new ``num_classes`` head) by ptflops.

Counts use ptflops' ``pytorch`` backend (conv, linear, batch norm, activations, pooling: one MAC per
multiply-add, element-wise layers one per element), the backend of ptflops' published table
(AlexNet 0.72, VGG16 15.52, ResNet-50 4.13 GMac at 224x224).

Why torchvision's ResNet-50 counts ~4.1 GMac and the paper's (Caffe) ResNet-50 3.87G: torchvision
puts the stride-2 of each downsampling block on the 3x3 conv, so the block's first 1x1 conv runs at
the full input resolution; Caffe's original ResNet puts the stride on that first 1x1 conv (and the
projection), which shrinks the 1x1's output, and thus the 3x3's input, four times. In conv3_1,
conv4_1 and conv5_1 the 1x1 reduce costs 103 MMac each in torchvision and 26 MMac in Caffe: about
0.23 GMac less in all (3.9 GMac measured here for the Caffe layout with a 2-class head; the paper's
3.87G counts the convolutions and fully connected layers only).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
from importlib.metadata import version
from pathlib import Path

import torch
from ptflops import get_model_complexity_info
from ptflops.pytorch_ops import MODULES_MAPPING, linear_flops_counter_hook
from torch import nn

from facediag.core.files import atomic_write, config_hash
from facediag.models.archs.caffe_resnet import Conv1x1Classifier
from facediag.models.archs.dlib_resnet import Affine2d
from facediag.models.face_backbone import FaceBackbone
from facediag.models.registry import create, load_spec
from facediag.models.weights import WeightSpec


def count_macs(
    backbone: str | FaceBackbone, weights: str = "none", num_classes: int | None = None
) -> tuple[int, int]:
    """(MACs, parameters) of one forward pass of a single image at the backbone's input size.

    ``backbone`` is a name (built in the ``weights`` spec's architecture with uninitialised weights; the
    file is not read) or a FaceBackbone (left untouched). ``num_classes`` replaces the final layer
    first (the adapted DTL1 model); None keeps it.
    """
    if isinstance(backbone, FaceBackbone):
        model = copy.deepcopy(backbone) if num_classes is not None else backbone
    else:
        model = unweighted_model(backbone, load_spec(backbone, weights))
    if num_classes is not None:
        model.replace_head(num_classes)
    size = model.input_size
    was_training = model.training
    model.eval()
    with torch.no_grad():
        macs, params = get_model_complexity_info(
            model, (3, size, size), as_strings=False, print_per_layer_stat=False, backend="pytorch",
            custom_modules_hooks=module_hooks(model),
        )
    model.train(was_training)
    if macs is None or params is None:
        raise RuntimeError(f"ptflops could not count {model.backbone}/{model.spec.dataset}")
    return int(macs), int(params)


def cached_count_macs(
    backbone: str, weights: str, num_classes: int, cache_dir: str | os.PathLike | None
) -> tuple[int, int]:
    """``count_macs(backbone, weights, num_classes)``, kept in ``<cache_dir>/macs/<key>.json``: the count depends
    only on the architecture, input size and head (and on the counting code and its versions), so every run of a sweep
    after the first skips the forward pass (about a second on 2 cores). ``cache_dir=None`` counts every time."""
    if cache_dir is None:
        return count_macs(backbone, weights, num_classes)
    spec = load_spec(backbone, weights)
    key = config_hash({
        "backbone": backbone, "arch": spec.arch, "input_size": spec.input_size, "spec_classes": spec.num_classes,
        "classes": num_classes, "versions": [version("ptflops"), torch.__version__],
        "counting_code": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
    })
    path = Path(cache_dir) / "macs" / f"{key}.json"
    try:
        stored = json.loads(path.read_text())
        return int(stored["macs"]), int(stored["params"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    macs, params = count_macs(backbone, weights, num_classes)
    record = {"backbone": backbone, "weights": weights, "classes": num_classes, "macs": macs, "params": params}
    atomic_write(path, lambda handle: handle.write(json.dumps(record).encode()))
    return macs, params


def _affine_hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
    """A per-channel scale and shift counts like an affine batch norm: two operations per element."""
    module.__flops__ += 2 * int(inputs[0].numel())


def module_hooks(model: nn.Module) -> dict[type, object]:
    """ptflops hooks for this package's layers and for subclasses of the layers ptflops knows.

    ptflops matches exact types, so without these EfficientNet's ``Conv2dStaticSamePadding`` (an
    ``nn.Conv2d``) and the 1x1-conv classifier of the Caffe ResNets would count as zero.
    """
    hooks: dict[type, object] = {Conv1x1Classifier: linear_flops_counter_hook, Affine2d: _affine_hook}
    for module in model.modules():
        kind = type(module)
        if kind in MODULES_MAPPING or kind in hooks:
            continue
        for base, hook in MODULES_MAPPING.items():
            if isinstance(module, base):
                hooks[kind] = hook
                break
    return hooks


def random_weights_spec(spec: WeightSpec) -> WeightSpec:
    """The spec's architecture, head size and input with random weights (no file needed)."""
    if not spec.needs_file:
        return spec
    return dataclasses.replace(load_spec(spec.backbone, "none"), arch=spec.arch,
                               num_classes=spec.num_classes, input_size=spec.input_size)


def unweighted_model(backbone: str, spec: WeightSpec) -> FaceBackbone:
    """``backbone`` in the layout of ``spec`` (architecture, head, input size) with every weight and buffer zero: no
    file read and no random init (0.1-0.3 s instead of 1-6 s on 2 cores). For shapes, counts, or weights loaded
    next; its outputs mean nothing."""
    with torch.device("meta"):
        model = create(backbone, random_weights_spec(spec))
    model.to_empty(device="cpu")
    with torch.no_grad():
        for tensor in (*model.parameters(), *model.buffers()):
            tensor.zero_()  # not garbage memory: denormals or NaN would slow the counting forward pass
    return model
