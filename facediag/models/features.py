"""Batched DTL2 feature extraction: eval mode, no gradients, the spec's preprocessing."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from facediag.models.face_backbone import FaceBackbone


def extract_features(
    model: FaceBackbone,
    images: np.ndarray | torch.Tensor | Sequence[np.ndarray],
    batch_size: int = 64,
    device: torch.device | str | None = None,
    amp: bool = False,
    channels_last: bool = False,
    layer: str = "features",
) -> np.ndarray:
    """uint8 RGB crops (N, H, W, 3) at the model's input size -> float32 features (N, feature_dim).

    Runs ``model.<layer>`` (``features``: the DTL2 feature layer; ``penultimate``: the input of a fine-tuned
    head) in eval mode under ``torch.inference_mode`` in batches; the model's
    train/eval state is restored afterwards. On CUDA, ``amp`` runs in bfloat16 autocast and
    ``channels_last`` uses NHWC memory (both ignored on CPU). ``device`` defaults to the model's; another
    device moves the model there.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    count = len(images)
    parameter = next(model.parameters())
    device = torch.device(device) if device is not None else parameter.device
    if parameter.device != device:
        model.to(device)
    on_cuda = device.type == "cuda"
    memory_format = torch.channels_last if (channels_last and on_cuda) else torch.contiguous_format
    if memory_format is torch.channels_last:
        model.to(memory_format=torch.channels_last)
    use_amp = amp and on_cuda
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else contextlib.nullcontext()
    forward = getattr(model, layer)
    was_training = model.training
    model.eval()
    chunks: list[torch.Tensor] = []
    try:
        with torch.inference_mode(), autocast:
            for start in range(0, count, batch_size):
                batch = model.preprocess(images[start : start + batch_size], device=device,
                                         memory_format=memory_format)
                chunks.append(forward(batch).float().cpu())
    finally:
        model.train(was_training)
    if not chunks:
        return np.zeros((0, model.feature_dim), dtype=np.float32)
    return torch.cat(chunks).numpy()


def source_name(source: Mapping[str, Any]) -> str:
    """A fused source's name: its recorded ``name`` (metrics.json), else its backbone or landmark-features kind."""
    return str(source.get("name") or (source["backbone"] if "backbone" in source else source["features"]))


def mirrored_crops(crops: np.ndarray) -> np.ndarray:
    """uint8 crops (N, H, W, 3) mirrored left-right (a contiguous copy)."""
    return np.ascontiguousarray(np.asarray(crops)[:, :, ::-1])


def flip_averaged(features: np.ndarray, mirrored: np.ndarray) -> np.ndarray:
    """The flip-averaged feature of a fused source with ``flip``: the mean of the features of each crop and of its
    mirror, float32, computed the same way at training and at prediction (so a run reproduces its scores)."""
    return ((np.asarray(features, dtype=np.float32) + np.asarray(mirrored, dtype=np.float32)) / 2).astype(np.float32)


#: named regions of a fused CNN source's aligned crop, (x0, y0, x1, y1) as fractions of its width and height.
#: ``lower_face``: placed on EfficientNet-Lite0's VGGFace2 crop (padding 0.2, the 162 London training photos'
#: landmarks): from just below the eyes (y 0.40; eyes at 0.34, cheek apples 0.40-0.55, nose tip 0.54) to below
#: the chin (0.95; chin 0.80-0.94), jaw to jaw (x 0.125-0.875; jaw 0.14-0.86): mouth corners, cheek raise and
#: nasolabial folds, where a smile shows, without the eyes, hair and background.
REGIONS: dict[str, tuple[float, float, float, float]] = {"lower_face": (0.125, 0.40, 0.875, 0.95)}


def region_box(region: str | Sequence[float]) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) fractions of a source's ``region``: a name in :data:`REGIONS` or four fractions with
    0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1; anything else is refused naming the value."""
    if isinstance(region, str):
        if region not in REGIONS:
            raise ValueError(f"region {region!r}: unknown name; choose one of {sorted(REGIONS)} or give "
                             "[x0, y0, x1, y1] fractions of the crop")
        return REGIONS[region]
    try:
        x0, y0, x1, y1 = (float(v) for v in region)
    except (TypeError, ValueError) as err:
        raise ValueError(f"region {region!r}: give a name or four fractions [x0, y0, x1, y1] ({err})") from None
    if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
        raise ValueError(f"region {list(region)}: need 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1")
    return x0, y0, x1, y1


def region_crops(crops: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """uint8 crops (N, H, W, 3) cut to the ``box`` fractions and resized back to (H, W) (bilinear): the region view
    a fused source's ``region`` gives its CNN, the same at training and at prediction."""
    import cv2

    crops = np.asarray(crops)
    height, width = crops.shape[1:3]
    x0, y0, x1, y1 = box
    left, top = round(x0 * width), round(y0 * height)
    right, bottom = max(round(x1 * width), left + 1), max(round(y1 * height), top + 1)
    out = np.empty_like(crops)
    for i, crop in enumerate(crops):
        out[i] = cv2.resize(np.ascontiguousarray(crop[top:bottom, left:right]), (width, height),
                            interpolation=cv2.INTER_LINEAR)
    return out
