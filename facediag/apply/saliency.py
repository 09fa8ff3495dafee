"""What a trained run looks at: Grad-CAM through the CNN, occlusion sensitivity through any scoring function.

Grad-CAM (pytorch-grad-cam) needs one torch module from the normalised image to the class scores:
DTL1 is the fine-tuned network itself; DTL2 is the frozen backbone followed by a ``torch.nn.Linear``
holding the linear SVM (its StandardScaler folded into the weights), so the SVM's decision value
back-propagates to the convolution maps. Occlusion sensitivity (captum) only needs a function
crops → scores, so it serves every strategy, DSIFT included.

Every saliency map is float32 with the crop's height × width; larger = more important for the class.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from facediag.classifiers.torch_linear import FeaturesThenLinear, svm_as_linear  # noqa: F401 (svm_as_linear: re-exported)
from facediag.preprocess.align import MOUTH, region_mask  # noqa: F401 (re-exported: the regions saliency is scored on)

METHODS = ("gradcam", "occlusion")
CONSTANT_RANGE = 1e-6  # a map whose values span less (relative, at least absolute) shows rounding noise only
Scorer = Callable[[np.ndarray], np.ndarray]  # uint8 crops (N, H, W, 3) -> scores (N, C)


# ---------------------------------------------------------------------- torch modules of a run


def class_score_module(run: Any) -> nn.Module:
    """The torch module of a ``TrainedRun`` from ``backbone_of(module).preprocess(crops)`` to the class scores
    (DTL1 logits; DTL2 the SVM decision values): its Predictor's ``class_score_module()``; a strategy without a CNN
    (DSIFT) refuses with the reason (use occlusion)."""
    return run.predictor.class_score_module()


def randomized(module: nn.Module, seed: int = 0) -> nn.Module:
    """A copy with every weight tensor shuffled (same values and scale, no learned structure): the model
    randomisation check of Adebayo et al. (2018)."""
    clone = copy.deepcopy(module)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in clone.parameters():
            flat = parameter.detach().reshape(-1)
            parameter.copy_(flat[torch.randperm(flat.numel(), generator=generator)].reshape(parameter.shape))
    return clone.eval()


def backbone_of(module: nn.Module) -> Any:
    """The FaceBackbone inside a ``class_score_module`` (or a ``randomized`` copy of it)."""
    return module.backbone if isinstance(module, FeaturesThenLinear) else module


def module_scorer(module: nn.Module, softmax: bool = False, batch_size: int = 32) -> Scorer:
    """crops → scores of ``module`` (softmax probabilities with ``softmax``), batched, without gradients."""
    backbone = backbone_of(module)

    @torch.no_grad()
    def score(crops: np.ndarray) -> np.ndarray:
        outputs = []
        for start in range(0, len(crops), batch_size):
            logits = module(backbone.preprocess(crops[start : start + batch_size])).float()
            outputs.append((torch.softmax(logits, dim=1) if softmax else logits).numpy())
        return np.concatenate(outputs) if outputs else np.zeros((0, 0))

    return score


def cam_layer(backbone: Any, min_side: int = 7) -> nn.Module:
    """The Grad-CAM layer: the last module of the deepest stage whose output is still ≥ ``min_side`` pixels
    wide (EfficientNet-Lite0: its 7×7 head conv; dlib's ResNet: the 8×8 stage, not its 2×2 last one)."""
    stages = backbone.stages()
    sides: dict[int, int] = {}
    hooks = [
        modules[-1].register_forward_hook(lambda _m, _i, out, k=k: sides.__setitem__(k, int(out.shape[-1])))
        for k, modules in enumerate(stages)
    ]
    try:
        size = int(backbone.input_size)
        with torch.no_grad():
            backbone.penultimate(torch.zeros(1, 3, size, size))
    finally:
        for hook in hooks:
            hook.remove()
    wide = [k for k, side in sides.items() if side >= min_side]
    return stages[max(wide) if wide else 0][-1]


# ---------------------------------------------------------------------- saliency


def gradcam(
    module: nn.Module, crops: np.ndarray, targets: Sequence[int], layer: nn.Module | None = None, batch_size: int = 16
) -> np.ndarray:
    """Grad-CAM maps (N, H, W) in [0, 1] of class ``targets[i]`` for each crop (pytorch-grad-cam); ``layer``
    defaults to ``cam_layer`` of the module's backbone."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    backbone = backbone_of(module)
    layer = layer if layer is not None else cam_layer(backbone)
    maps = []
    with GradCAM(model=module, target_layers=[layer]) as cam:
        for start in range(0, len(crops), batch_size):
            x = backbone.preprocess(crops[start : start + batch_size]).requires_grad_(True)
            chosen = [ClassifierOutputTarget(int(t)) for t in targets[start : start + batch_size]]
            maps.append(cam(input_tensor=x, targets=chosen))
    return np.concatenate(maps).astype(np.float32) if maps else np.zeros((0, *crops.shape[1:3]), np.float32)


def occlusion_window(size: int) -> tuple[int, int]:
    """(window, stride) in pixels for a ``size`` crop: non-overlapping squares of about 1/8 of the crop that
    tile it exactly where possible (150 px: 15, a 10×10 grid; 224 px: 28, 8×8): 64-100 scorings per photo."""
    target = size / 8
    divisors = [w for w in range(4, size // 2 + 1) if size % w == 0 and abs(w - target) <= target / 3]
    window = min(divisors, key=lambda w: abs(w - target)) if divisors else max(4, round(target))
    return window, window


def occlusion(
    scorer: Scorer, crops: np.ndarray, targets: Sequence[int], window: int | None = None, stride: int | None = None,
    batch_size: int = 64,
) -> np.ndarray:
    """Occlusion sensitivity (N, H, W) (captum): the drop of class ``targets[i]``'s score when a grey
    ``window`` square covers each pixel, averaged over the windows covering it. Negative where covering helps."""
    from captum.attr import Occlusion

    if len(crops) == 0:
        return np.zeros((0, *crops.shape[1:3]), np.float32)
    size = crops.shape[1]
    default_window, default_stride = occlusion_window(size)
    window, stride = window or default_window, stride or default_stride

    def forward(images: torch.Tensor) -> torch.Tensor:
        pixels = images.round().clamp(0, 255).to(torch.uint8).numpy()
        return torch.from_numpy(np.asarray(scorer(pixels), dtype=np.float64))

    explainer = Occlusion(forward)
    maps = []
    for crop, target in zip(crops, targets, strict=True):
        attribution = explainer.attribute(
            torch.from_numpy(crop[None].astype(np.float64)),
            sliding_window_shapes=(window, window, 3),
            strides=(stride, stride, 3),
            baselines=128.0,
            target=int(target),
            perturbations_per_eval=batch_size,
        )
        maps.append(attribution[0].mean(dim=-1).numpy())
    return np.stack(maps).astype(np.float32)


# ---------------------------------------------------------------------- landmarks, regions, pictures


def mass_share(saliency: np.ndarray, mask: np.ndarray) -> float:
    """Share of the positive saliency mass inside ``mask`` (NaN when the map has no positive mass)."""
    positive = np.clip(saliency, 0, None)
    total = float(positive.sum())
    return float(positive[mask].sum()) / total if total > 0 else float("nan")


def blank_reason(saliency: np.ndarray) -> str:
    """Why a map shows nothing, in words ("" when it shows something): NaN values, all zeros, one value (a range
    below ``CONSTANT_RANGE`` x its largest magnitude, at least 1: rounding noise), or no positive value (the
    overlay draws the positive part: no region raises the class score)."""
    values = np.asarray(saliency, dtype=np.float64)
    if values.size == 0:
        return "empty map"
    if not np.isfinite(values).all():
        return f"{int((~np.isfinite(values)).sum())} of {values.size} values are NaN or infinite"
    if not values.any():
        return "every value is zero"
    if np.ptp(values) <= CONSTANT_RANGE * max(1.0, float(np.abs(values).max())):
        return f"every value is {float(values.flat[0]):.3g} (a constant map: its range is below {CONSTANT_RANGE:g})"
    if values.max() <= 0:
        return "no positive value: no region raises the class score"
    return ""


def normalised(saliency: np.ndarray) -> np.ndarray:
    """The positive part scaled to [0, 1] (for display)."""
    positive = np.clip(np.nan_to_num(saliency), 0, None)
    top = float(positive.max())
    return positive / top if top > 0 else positive


def overlay(crop: np.ndarray, saliency: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
    """uint8 RGB: the crop with the saliency as a jet heat map (pytorch-grad-cam), landmarks as dots."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    picture = show_cam_on_image(crop.astype(np.float32) / 255.0, normalised(saliency), use_rgb=True, image_weight=0.6)
    if landmarks is not None and np.isfinite(landmarks).all():
        for x, y in np.round(landmarks).astype(int):
            cv2.circle(picture, (int(x), int(y)), 1, (255, 255, 255), -1)
    return picture


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps (scipy); NaN when one map is constant."""
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a.ravel(), b.ravel()).statistic)
