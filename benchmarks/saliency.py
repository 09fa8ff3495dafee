"""Saliency sanity checks on finished London expression runs: model randomisation and the mouth region.

    python benchmarks/saliency.py <run dir> [...] [--labels smiling neutral] [--photos 34] [--occlusion-photos 8]

For the test photos of each of ``--labels`` (default smiling) of each run: Grad-CAM and occlusion saliency of that
class, for the trained model and for the same model with every weight tensor shuffled (Adebayo et al.
2018). Prints, per run × method × model: the share of positive saliency mass inside the mouth region
(convex hull of landmarks 48-67, dilated by 10% of the mouth width) next to the region's share of the crop
area, the Spearman rank correlation between the trained and the randomised model's maps, and how the class's
score changes when the mouth region is replaced by a blurred copy (Gaussian, sigma 1/16 of the crop) next to
the same shape blurred 1/3 of the crop higher (a baseline-free check of whether the mouth matters at all).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_average, print_header, print_table  # noqa: E402


def mean_ci(values: list[float]) -> str:
    """mean [95% t interval]."""
    from scipy import stats

    data = np.asarray([v for v in values if np.isfinite(v)])
    if len(data) < 2:
        return f"{data.mean():.3f}" if len(data) else "—"
    low, high = stats.t.interval(0.95, len(data) - 1, loc=data.mean(), scale=stats.sem(data))
    return f"{data.mean():.3f} [{low:.3f}, {high:.3f}]"


def blurred_region(crops: np.ndarray, masks: list[np.ndarray], shift: int = 0) -> np.ndarray:
    """Crops with ``masks`` (moved up by ``shift`` pixels) replaced by a strongly blurred copy."""
    import cv2

    out = crops.copy()
    for crop, image, mask in zip(crops, out, masks, strict=True):
        region = np.roll(mask, -shift, axis=0)
        image[region] = cv2.GaussianBlur(crop, (0, 0), crop.shape[0] / 16)[region]
    return out


def check_run(
    run_dir: str, label: str, n_photos: int, n_occlusion: int, seed: int, window: int | None = None
) -> list[dict[str, object]]:
    from facediag.apply.saliency import (
        class_score_module,
        gradcam,
        mass_share,
        module_scorer,
        occlusion,
        randomized,
        region_mask,
        spearman,
    )
    from facediag.apply.trained_run import TrainedRun

    run = TrainedRun(run_dir)
    split = pd.read_csv(Path(run_dir) / "split.csv")
    paths = split.loc[(split["role"] == "test") & (split["label"] == label), "path"].astype(str).tolist()[:n_photos]
    preprocessor = run.preprocessor()
    faces = preprocessor.faces(paths, run.crop, landmarks=True)
    crops, landmarks = faces.crops, faces.landmarks
    masks = [region_mask(points, crops.shape[1]) for points in landmarks]
    area = [float(mask.mean()) for mask in masks]
    target = run.classes.index(label)
    trained = class_score_module(run)
    models = {"trained": trained, "randomised": randomized(trained, seed)}
    softmax = run.strategy == "dtl1"
    accuracy, ablation = {}, {}
    for name, model in models.items():
        score = module_scorer(model, softmax)
        base = score(crops)
        accuracy[name] = float((base.argmax(axis=1) == target).mean())
        mouth = score(blurred_region(crops, masks))[:, target] - base[:, target]
        above = score(blurred_region(crops, masks, crops.shape[1] // 3))[:, target] - base[:, target]
        ablation[name] = (mean_ci(list(mouth)), mean_ci(list(above)))
    rows = []
    for method in ("gradcam", "occlusion"):
        count = len(crops) if method == "gradcam" else min(n_occlusion, len(crops))
        maps = {}
        for name, model in models.items():
            started = time.perf_counter()
            if method == "gradcam":
                maps[name] = gradcam(model, crops[:count], [target] * count)
            else:
                stride = window // 2 if window else None
                maps[name] = occlusion(module_scorer(model, softmax), crops[:count], [target] * count, window, stride)
            seconds = time.perf_counter() - started
            shares = [mass_share(m, mask) for m, mask in zip(maps[name], masks, strict=False)]
            rows.append({
                "run": f"{run.cfg.backbone.name} {run.strategy}", "method": method if method == "gradcam" or not window
                else f"occlusion {window}px", "model": name, "photos": count,
                "class": label, "predicted as class": f"{accuracy[name]:.2f}",
                "mouth saliency share": mean_ci(shares), "mouth area share": mean_ci(area[:count]),
                "s / photo": f"{seconds / max(count, 1):.2f}",
                "Δscore mouth blurred": ablation[name][0], "Δscore same area higher blurred": ablation[name][1],
            })  # fmt: skip
        rho = [spearman(a, b) for a, b in zip(maps["trained"], maps["randomised"], strict=True)]
        for row, name in zip(rows[-2:], models, strict=True):
            row["flat maps"] = int(sum(np.ptp(m) == 0 for m in maps[name]))
            row["Spearman trained vs randomised"] = mean_ci(rho)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--labels", nargs="+", default=["smiling"], help="explain this class on its test photos")
    parser.add_argument("--photos", type=int, default=34, help="test photos of --label for Grad-CAM")
    parser.add_argument("--occlusion-photos", type=int, default=8, help="of those, for occlusion (~100 scorings each)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--occlusion-window", type=int, default=None,
                        help="square side in pixels, stride half (default: facediag.apply.saliency.occlusion_window)")
    args = parser.parse_args()
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    torch.set_num_threads(1)
    print_header("Saliency sanity checks", torch_threads=1, labels=args.labels, photos=args.photos,
                 occlusion_photos=args.occlusion_photos, occlusion_window=args.occlusion_window, seed=args.seed)
    started = time.perf_counter()
    rows = []
    for run_dir in args.runs:
        for label in args.labels:
            rows += check_run(run_dir, label, args.photos, args.occlusion_photos, args.seed, args.occlusion_window)
    print_table(rows)
    print(f"\ntotal {time.perf_counter() - started:.0f} s wall; load average at the end {load_average()} "
          "(shared machine)")


if __name__ == "__main__":
    main()
