"""Batched DTL2 feature extraction: eval mode, no gradients, the spec's preprocessing."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

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


def mirrored_crops(crops: np.ndarray) -> np.ndarray:
    """uint8 crops (N, H, W, 3) mirrored left-right (a contiguous copy)."""
    return np.ascontiguousarray(np.asarray(crops)[:, :, ::-1])


def flip_averaged(features: np.ndarray, mirrored: np.ndarray) -> np.ndarray:
    """The flip-averaged feature of a fused source with ``flip``: the mean of the features of each crop and of its
    mirror, float32, computed the same way at training and at prediction (so a run reproduces its scores)."""
    return ((np.asarray(features, dtype=np.float32) + np.asarray(mirrored, dtype=np.float32)) / 2).astype(np.float32)
