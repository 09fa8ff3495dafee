"""Saliency sanity checks: model randomisation and the mouth region (London expression runs), or the truth masks of a
simulated tree (``--truth``, runs trained on ``data=simulated``).

    python benchmarks/saliency.py <run dir> [...] [--labels smiling neutral] [--photos 34] [--occlusion-photos 8]
    python benchmarks/saliency.py <simulated run dir> [...] --truth [--photos 16] [--occlusion-photos 16]
                                  [--descriptors] [--pool]

For the test photos of each of ``--labels`` (default smiling) of each run: Grad-CAM and occlusion saliency of that
class, for the trained model and for the same model with every weight tensor shuffled (Adebayo et al.
2018). Prints, per run × method × model: the share of positive saliency mass inside the mouth region
(convex hull of landmarks 48-67, dilated by 10% of the mouth width) next to the region's share of the crop
area, the Spearman rank correlation between the trained and the randomised model's maps, and how the class's
score changes when the mouth region is replaced by a blurred copy (Gaussian, sigma 1/16 of the crop) next to
the same shape blurred 1/3 of the crop higher (a baseline-free check of whether the mouth matters at all).

``--truth``: for the test photos of every simulated condition (each explained for its own class; condition kinds
geometric, appearance and syndrome, a syndrome's mask the union of its descriptors'), the truth mask of
the tree (``.truth/<subject>_truth.png``, the region the condition changed) warped into the crop by the same
alignment as the crop; per run × condition kind × method × model: the share of positive saliency mass inside the
mask next to the mask's share of the crop, their ratio, the pointing game (the map's maximum inside the mask) and
the Spearman correlation of the trained and randomised model's maps (the randomisation check passes when it is
far from 1), each also on the photos the trained model predicts right. ``--descriptors``: a syndrome photo is also
scored against each of its descriptors' own regions (replayed from the tree's seeded draws; their union is the
stored mask). ``--pool``: one row per method over all the runs given (e.g. the five folds of a CV, every test
person once). DSIFT has no CNN: occlusion only.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_average, print_header, print_table  # noqa: E402

from facediag.core.crop import CropSpec  # noqa: E402


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
    softmax = scores_are_softmax(run, trained, crops)
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


def scores_are_softmax(run: object, module: torch.nn.Module, crops: np.ndarray) -> bool:
    """Whether the run's own scores are the softmax of ``module``'s outputs (a fine-tuned network's logits) rather
    than the outputs themselves (an SVM's decision values, a gallery's minus distances): asked of the Predictor."""
    from facediag.apply.saliency import module_scorer
    from facediag.strategies.predictor import softmax

    own = run.predictor.score_crops(crops[:2])[0]
    raw = module_scorer(module)(crops[:2])
    return not np.allclose(own, raw, atol=1e-4) and np.allclose(own, softmax(raw), atol=1e-4)


def warped_mask(preprocessor: object, result: object, crop: CropSpec, mask: np.ndarray) -> np.ndarray:
    """A photo-sized bool ``mask`` warped into the photo's crop with the crop's own alignment matrix."""
    import cv2

    matrix = np.asarray(preprocessor.aligner.crop_matrix(result, crop), dtype=np.float64)[:2]
    return cv2.warpAffine(mask.astype(np.float32) * 255, matrix, (crop.size, crop.size), flags=cv2.INTER_LINEAR) > 127


@functools.cache
def truth_table(tree: Path) -> pd.DataFrame:
    """A simulated tree's ``truth.csv`` indexed by path (read once per tree)."""
    return pd.read_csv(tree / "truth.csv").set_index("path")


def stored_mask(photo: str | os.PathLike) -> np.ndarray:
    """A simulated photo's truth mask as its tree stores it (``truth.csv`` → ``.truth/<subject>_truth.png``)."""
    import cv2

    photo = Path(photo)
    tree = photo.parent.parent
    mask = truth_table(tree).loc[f"{photo.parent.name}/{photo.name}", "mask"]
    return cv2.imread(str(tree / mask), cv2.IMREAD_GRAYSCALE) > 127


def descriptor_masks(stored: dict[str, np.ndarray], london_root: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
    """Photo path -> descriptor -> the region that descriptor changed (photo-sized bool), for the syndrome photos
    among ``stored`` (photo path -> its stored truth mask; all of one London tree), by replaying the tree's seeded
    draws; their union must give the stored truth mask back (< 0.1% of pixels differ), or the tree was made by other
    code."""
    import json
    from dataclasses import fields

    from facediag.simulate.conditions import CONDITIONS
    from facediag.simulate.measures import replay
    from facediag.simulate.source import london_faces
    from facediag.simulate.tree import Settings, descriptor_regions

    if not stored:
        return {}
    tree = Path(next(iter(stored))).parent.parent
    made = json.loads((tree / "simulate.json").read_text())
    settings = Settings(**{f.name: made[f.name] for f in fields(Settings) if f.name in made})
    table = pd.read_csv(tree / "conditions.csv")
    sd = table.set_index("condition")["sd"]
    wanted = {f"{Path(p).parent.name}/{Path(p).name}": str(p) for p in stored}
    regions = {}
    for face, label, drawn in replay(london_faces(london_root), settings, table):
        photo = wanted.get(f"{label}/{face.subject}.jpg")
        if photo is None or CONDITIONS[label].kind != "syndrome":
            continue
        mask = stored[photo]
        regions[photo] = descriptor_regions(face.points, drawn, CONDITIONS[label], sd, mask.shape)
        union = np.logical_or.reduce(list(regions[photo].values()))
        if np.mean(union != mask) > 1e-3:
            raise ValueError(f"{photo}: the replayed descriptors' regions do not give its truth mask back "
                             f"({np.mean(union != mask):.2%} of pixels differ): the tree was made by other code")
    return regions


def pointing_hit(saliency: np.ndarray, mask: np.ndarray) -> float:
    """1 when the map's maximum lies inside ``mask``, 0 outside, NaN for a flat map."""
    if np.ptp(saliency) == 0:
        return float("nan")
    return float(mask.flat[int(np.argmax(saliency))])


def truth_records(
    run_dir: str, n_photos: int, n_occlusion: int, seed: int, descriptors: bool = False
) -> list[dict[str, object]]:
    """One record per test photo of each condition (explained for its own class) × method × model × truth
    region: saliency share inside the region, the region's area share, pointing hit, the Spearman correlation of
    the trained and randomised maps, whether the trained model predicts the photo's class. ``descriptors``: a
    syndrome photo is scored against each descriptor's region too (target ``descriptor <name>``)."""
    from facediag.apply.saliency import gradcam, mass_share, module_scorer, occlusion, randomized, spearman
    from facediag.apply.trained_run import TrainedRun
    from facediag.simulate.conditions import CONDITIONS
    from facediag.strategies.predictor import CapabilityError

    run = TrainedRun(run_dir)
    split = pd.read_csv(Path(run_dir) / "split.csv")
    test = split[(split["role"] == "test") & split["label"].isin([c for c in run.classes if c in CONDITIONS])]
    preprocessor = run.preprocessor()
    records = []
    for kind in ("geometric", "appearance", "syndrome"):  # a syndrome: several descriptors, the union of their masks
        part = test[[CONDITIONS[label].kind == kind for label in test["label"]]].head(n_photos)
        if part.empty:
            continue
        paths = part["path"].astype(str).tolist()
        preprocessor.landmarks(paths)
        faces = preprocessor.faces(paths, run.crop)
        crops, kept = faces.crops, faces.kept
        labels = dict(zip(part["path"].astype(str), part["label"], strict=True))
        targets = [run.classes.index(labels[r.path]) for r in kept]
        right = run.predictor.score_crops(crops)[0].argmax(axis=1) == np.asarray(targets)
        stored = {r.path: stored_mask(r.path) for r in kept}
        regions = {"truth mask": [warped_mask(preprocessor, r, run.crop, stored[r.path]) for r in kept]}
        if descriptors and kind == "syndrome":
            parts = descriptor_masks(stored, run.cfg.data.source.london_root)
            for name in sorted({d for r in kept for d in parts[r.path]}):
                regions[f"descriptor {name}"] = [warped_mask(preprocessor, r, run.crop, parts[r.path][name])
                                                 if name in parts[r.path] else None for r in kept]  # fmt: skip
        try:
            trained = run.predictor.class_score_module()
            models = {"trained": trained, "randomised": randomized(trained, seed)}
            scorers = {name: module_scorer(m, scores_are_softmax(run, trained, crops)) for name, m in models.items()}
        except CapabilityError:  # no CNN (DSIFT): occlusion of the run's own scores; no randomised copy
            models, scorers = {"trained": None}, {"trained": lambda c: run.predictor.score_crops(c)[0]}
        for method in ("gradcam", "occlusion"):
            if method == "gradcam" and models["trained"] is None:
                continue
            count = len(crops) if method == "gradcam" else min(n_occlusion, len(crops))
            maps, seconds = {}, {}
            for name, model in models.items():
                started = time.perf_counter()
                maps[name] = (gradcam(model, crops[:count], targets[:count]) if method == "gradcam"
                              else occlusion(scorers[name], crops[:count], targets[:count]))
                seconds[name] = (time.perf_counter() - started) / max(count, 1)
            rho = ([spearman(a, b) for a, b in zip(maps["trained"], maps["randomised"], strict=True)]
                   if "randomised" in maps else [float("nan")] * count)  # fmt: skip
            for target, masks in regions.items():
                for name in models:
                    for i in range(count):
                        if masks[i] is None:
                            continue
                        records.append({
                            "run dir": run_dir, "run": f"{run.predictor.describe().summary} {run.variant}",
                            "kind": kind, "target": target, "method": method, "model": name, "photo": kept[i].path,
                            "inside": mass_share(maps[name][i], masks[i]), "area": float(masks[i].mean()),
                            "hit": pointing_hit(maps[name][i], masks[i]), "rho": rho[i], "right": bool(right[i]),
                            "seconds": seconds[name],
                        })  # fmt: skip
    return records


def ratio(inside: pd.Series, area: pd.Series) -> str:
    """Mean saliency share in the region over the mean area share ("—" without photos)."""
    return f"{np.nanmean(inside) / area.mean():.2f}" if len(area) and np.isfinite(inside).any() else "—"


def summarise_truth(records: list[dict[str, object]], pool: bool = False) -> list[dict[str, object]]:
    """Table rows per run (``pool``: per method description, the runs' photos together, e.g. the folds of a CV)
    × kind × truth region × method × model: photos, the share the trained model predicts right, the saliency share
    in the region, its area share, their ratio, the pointing game (hits / photos with a map that is not flat), the
    same ratio and pointing game on the photos predicted right, and the Spearman correlation of trained and
    randomised maps."""
    if not records:
        return []
    frame = pd.DataFrame(records)
    keys = ["run" if pool else "run dir", "kind", "target", "method", "model"]
    rows = []
    for key, group in frame.groupby(keys, sort=False):
        hits, right = group["hit"].dropna(), group[group["right"]]
        rows.append({
            "run": key[0] if pool else f"{group['run'].iloc[0]} ({Path(str(key[0])).name})",
            **dict(zip(keys[1:], key[1:], strict=True)), "runs": group["run dir"].nunique(), "photos": len(group),
            "right": f"{group['right'].mean():.2f}", "saliency in truth": mean_ci(list(group["inside"])),
            "truth area": f"{group['area'].mean():.3f}", "ratio": ratio(group["inside"], group["area"]),
            "pointing game": f"{hits.mean():.2f} ({int(hits.sum())}/{len(hits)})" if len(hits) else "—",
            "ratio, right": ratio(right["inside"], right["area"]),
            "pointing, right": f"{right['hit'].mean():.2f} ({int(right['hit'].sum())}/{right['hit'].count()})"
            if right["hit"].count() else "—",
            "Spearman trained vs randomised": mean_ci(list(group["rho"])) if group["rho"].notna().any() else "—",
            "s / photo": f"{group['seconds'].mean():.2f}",
        })  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--labels", nargs="+", default=["smiling"], help="explain this class on its test photos")
    parser.add_argument("--photos", type=int, default=34, help="test photos of --label for Grad-CAM")
    parser.add_argument("--occlusion-photos", type=int, default=8, help="of those, for occlusion (~100 scorings each)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--truth", action="store_true", help="simulated runs: saliency against the truth masks")
    parser.add_argument("--descriptors", action="store_true",
                        help="--truth: score a syndrome photo against each of its descriptors' regions too")
    parser.add_argument("--pool", action="store_true",
                        help="--truth: one row per method over all the runs given (e.g. the folds of a CV)")
    parser.add_argument("--occlusion-window", type=int, default=None,
                        help="square side in pixels, stride half (default: facediag.apply.saliency.occlusion_window)")
    args = parser.parse_args()
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    torch.set_num_threads(1)
    print_header("Saliency sanity checks", torch_threads=1, labels=args.labels, photos=args.photos,
                 occlusion_photos=args.occlusion_photos, occlusion_window=args.occlusion_window, seed=args.seed)
    started = time.perf_counter()
    rows, records = [], []
    for run_dir in args.runs:
        if args.truth:
            records += truth_records(run_dir, args.photos, args.occlusion_photos, args.seed, args.descriptors)
            continue
        for label in args.labels:
            rows += check_run(run_dir, label, args.photos, args.occlusion_photos, args.seed, args.occlusion_window)
    print_table(rows + summarise_truth(records, args.pool))
    print(f"\ntotal {time.perf_counter() - started:.0f} s wall; load average at the end {load_average()} "
          "(shared machine)")


if __name__ == "__main__":
    main()
