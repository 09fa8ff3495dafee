"""Is a London task's signal in the face? Frozen features of the face alone, of everything but the face, and of the
whole crop, each with a person-grouped cross-validated linear SVM.

A capture shortcut (the two photos of a person taken with other light, camera or framing, so that the background,
hair or clothing tell the class) would show as accuracy well above chance with the face masked out. The face is
the union over all photos of the convex hull of their 68 dlib landmarks (jaw, brows, nose, eyes, mouth) grown by 10%
of its width, one fixed region; "masked" fills it (or everything outside it) with the ImageNet mean colour.
Features: EfficientNet-Lite0 on its own crop (VGGFace2 template, padding 0.2, 224 px), flip-averaged as in the
fused presets, for each ``--layers`` feature layer.
Accuracy: outer person-grouped 5-fold CV x 2 split seeds, C chosen by an inner person-grouped CV on the training
folds only (``facediag.classifiers.svm.select_svm``), pooled over the folds of a repeat, mean over repeats;
95% interval: a
person bootstrap of the pooled predictions (``facediag.scoring.stats``).

Cues with no face at all, the same SVM: the photo's file size, and the fine grain of the four background corners
(log variance of the Laplacian) of the raw photo (150 px squares) and of the crop (32 px). ``--blur`` repeats
everything on crops Gaussian-blurred alike, which removes fine grain from every photo; ``--align eyes`` aligns on the
eye centres only, so that the mouth cannot move the crop.

    FACEDIAG_DATA_DIR=/work/shared/data python benchmarks/shortcut.py [--task expression] [--layers pool stages]
        [--blur 0 1.5] [--align eyes]

``--harmonise SPEC ...`` instead measures capture harmonisation (``preprocess.harmonise``,
``facediag/preprocess/harmonise.py``): one column per SPEC (``none``, or steps joined by ``,`` with settings after
``:``, e.g. ``resample:px=32,background,jpeg:quality=75``), the crops made by the project's preprocessing with those
steps. Rows: the cues with no CNN (the photo file's size, before only: a model never sees it; each crop saved as PNG,
its size; the 32 px corners' grain; the grain of two 16 px cheek patches, which a smile may change too) and the
EfficientNet views above, on expression, and the whole crop and face-masked view on sex (face signal that should
stay). Features are cached under ``<cache>/benchmarks/shortcut``.

    FACEDIAG_DATA_DIR=/work/shared/data python benchmarks/shortcut.py --harmonise none resample,background,jpeg
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
from common import print_header, print_table
from gpu_crops import compose

VIEWS = ("whole crop", "face only (rest masked)", "face masked")


def masked_views(crops: np.ndarray, points: np.ndarray) -> dict[str, np.ndarray]:
    """The crops as they are, and with everything but the face / the face filled
    (:func:`facediag.audit.capture.face_region`, one fixed region for every photo)."""
    from facediag.audit.capture import face_region, filled

    size = crops.shape[1]
    face = face_region(points, size)
    print(f"face region: {face.mean():.0%} of the {size} x {size} crop, rows {np.flatnonzero(face.any(1))[[0, -1]]}, "
          f"columns {np.flatnonzero(face.any(0))[[0, -1]]}")
    return dict(zip(VIEWS, (crops, filled(crops, ~face), filled(crops, face)), strict=True))


def corner_energy(images: list[np.ndarray] | np.ndarray, size: int = 32) -> np.ndarray:
    """(N, 4) :func:`facediag.audit.capture.corner_grain` of each RGB image's ``size`` px corners (grey)."""
    import cv2

    from facediag.audit.capture import corner_grain

    return np.stack([corner_grain(cv2.cvtColor(np.ascontiguousarray(c), cv2.COLOR_RGB2GRAY), size) for c in images])


def eye_aligned(paths: list[str], results: list, points: np.ndarray, size: int = 224) -> tuple[np.ndarray, np.ndarray]:
    """Crops aligned on the two eye centres only (an exact similarity onto the median eye positions of the usual
    crops), and their landmarks: the mouth no longer moves the crop (a smile widens the mouth, which shrinks and
    shifts the usual 68-point crop, so its surroundings alone could tell a smile)."""
    from facediag.core.imageio import read_rgb
    from facediag.preprocess.align import chip_matrix, transform_points, warp

    target = np.nanmedian(np.stack([points[:, 36:42].mean(1), points[:, 42:48].mean(1)], 1), axis=0)
    crops, moved = [], []
    for path, result in zip(paths, results, strict=True):
        eyes = np.stack([result.landmarks[36:42].mean(0), result.landmarks[42:48].mean(0)]).astype(np.float64)
        source, goal = eyes[1] - eyes[0], target[1] - target[0]
        scale = np.hypot(*goal) / np.hypot(*source)
        angle = np.arctan2(goal[1], goal[0]) - np.arctan2(source[1], source[0])
        rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        matrix = np.hstack([rotation, (target[0] - rotation @ eyes[0])[:, None]])
        crops.append(warp(read_rgb(path), matrix, size))
        moved.append(transform_points(result.landmarks, chip_matrix(matrix, size)))
    return np.stack(crops), np.stack(moved).astype(np.float32)


def blurred(crops: np.ndarray, sigma: float) -> np.ndarray:
    """Every crop Gaussian-blurred alike (``sigma`` px; 0: unchanged): removes fine grain from both classes."""
    import cv2

    if sigma <= 0:
        return crops
    return np.stack([cv2.GaussianBlur(np.ascontiguousarray(c), (0, 0), sigma) for c in crops])


def harmonise_steps(spec: str) -> list[dict[str, str]]:
    """``resample:px=32,jpeg`` -> ``[{"step": "resample", "px": "32"}, {"step": "jpeg"}]``; ``none`` -> []."""
    if spec == "none":
        return []
    steps = []
    for part in spec.split(","):
        name, _, settings = part.partition(":")
        steps.append({"step": name, **dict(item.split("=", 1) for item in settings.split(";") if item)})
    return steps


def cheek_grain(crops: np.ndarray, points: np.ndarray, side: int = 16) -> np.ndarray:
    """(N, 2) log Laplacian variance of a ``side`` px square on each cheek (between the jaw, the lower eyelid and
    the nose wing): grain inside the face, where background fill cannot reach (a smile may raise the cheeks too)."""
    import cv2

    found = []
    for crop, landmarks in zip(crops, points, strict=True):
        grey = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY).astype(np.float32)
        row = []
        for ring in ((1, 2, 40, 31), (15, 14, 47, 35)):
            x, y = np.round(landmarks[list(ring)].mean(0) - side / 2).astype(int)
            patch = grey[max(0, y) : y + side, max(0, x) : x + side]
            row.append(np.log(float(np.var(cv2.Laplacian(patch, cv2.CV_32F))) + 1e-6))
        found.append(row)
    return np.array(found)


def cached_features(cache: str, key: dict, compute) -> np.ndarray:
    """Features stored under ``<cache>/benchmarks/shortcut/<hash of key>.npy`` (computed once)."""
    from facediag.core.files import atomic_write, config_hash

    path = Path(cache) / "benchmarks" / "shortcut" / f"{config_hash(key)}.npy"
    if path.is_file():
        return np.load(path)
    features = np.asarray(compute(), dtype=np.float32)
    atomic_write(path, lambda handle: np.save(handle, features))
    return features


def harmonised_table(specs: list[str], layers: list[str]) -> None:
    """The before/after table of ``--harmonise``: capture cues and face-blind CNN views per harmonisation."""
    from hydra.utils import instantiate

    from facediag.audit.capture import face_region, filled, grouped_cv_accuracy
    from facediag.core.crop import CropSpec
    from facediag.core.imageio import read_rgb
    from facediag.models.features import extract_features, flip_averaged, mirrored_crops
    from facediag.models.registry import create
    from facediag.preprocess.harmonise import face_mask

    cfg = compose(["data=london", "data.task=expression", "preprocess=dlib"])
    records = instantiate(cfg.data.source).records()
    sexes = {r.path: r.label for r in instantiate(compose(["data=london", "data.task=sex"]).data.source).records()}
    paths = [r.path for r in records]
    base = instantiate(cfg.preprocess)
    results = base.faces(paths, CropSpec(224, "vggface2", 0.2)).results
    kept = [i for i, r in enumerate(results) if r.landmarks is not None]
    paths = [paths[i] for i in kept]
    points = base.crop_landmarks([results[i] for i in kept], CropSpec(224, "vggface2", 0.2))
    region = face_region(points, 224)
    groups = np.array([records[i].subject for i in kept], dtype=str)
    labels = {"expression": np.unique([records[i].label for i in kept], return_inverse=True)[1],
              "sex": np.unique([sexes[p] for p in paths], return_inverse=True)[1]}  # fmt: skip
    hull = np.array([face_mask(p, 224, 0.0).mean() for p in points])  # the face's own size and shape, not capture
    models = {layer: create("efficientnet_lite0", "imagenet", feature_layer=layer) for layer in layers}
    table: dict[tuple[str, str, str], dict[str, str]] = {}

    def add(spec: str, task: str, what: str, view: str, features: np.ndarray) -> None:
        digest = hashlib.sha256(np.ascontiguousarray(features, dtype=np.float64).tobytes()).hexdigest()
        key = {"cv": digest, "task": task, "people": list(groups)}
        accuracy, low, high = cached_features(cfg.paths.cache_dir, key, lambda: grouped_cv_accuracy(
            features, labels[task], groups, "svm", (0, 1)))
        table.setdefault((task, what, view), {})[spec] = f"{accuracy:.3f} [{low:.3f}-{high:.3f}]"
        print(spec, task, what, view, table[task, what, view][spec], flush=True)

    import cv2

    for spec in specs:
        steps = harmonise_steps(spec)
        preprocessor = instantiate(cfg.preprocess, harmonise=steps, n_workers=1, progress=False)
        crops = preprocessor.faces(paths, CropSpec(224, "vggface2", 0.2)).crops
        if spec == "none":
            add(spec, "expression", "no CNN: area of the 68-landmark hull (the face's shape)", "landmarks",
                hull[:, None])
            add(spec, "expression", "no CNN: photo file size (bytes)", "the photo file",
                np.array([[Path(p).stat().st_size] for p in paths], float))
            add(spec, "expression", "no CNN: log Laplacian variance of the 4 corners", "raw photo corners (150 px)",
                corner_energy([read_rgb(p) for p in paths], 150))
        add(spec, "expression", "no CNN: size of the crop saved as PNG (bytes)", "crop",
            np.array([[len(cv2.imencode(".png", c)[1])] for c in crops], float))
        png = np.log([len(cv2.imencode(".png", c)[1]) for c in crops])
        add(spec, "expression", "no CNN: size of the crop saved as PNG, the hull area regressed out", "crop",
            (png - np.polyval(np.polyfit(hull, png, 1), hull))[:, None])
        add(spec, "expression", "no CNN: log Laplacian variance of the 4 corners", "crop corners (32 px)",
            corner_energy(crops))
        add(spec, "expression", "no CNN: log Laplacian variance of 2 cheek patches", "crop cheeks (16 px)",
            cheek_grain(crops, points))
        for layer, model in models.items():
            views = dict(zip(VIEWS, (crops, filled(crops, ~region), filled(crops, region)), strict=True))
            for view, shown in views.items():
                key = {"harmonise": preprocessor.harmoniser.describe(), "layer": layer, "view": view, "paths": paths,
                       "crop": [224, "vggface2", 0.2], "flip": True}  # fmt: skip
                features = cached_features(cfg.paths.cache_dir, key, lambda shown=shown, model=model: flip_averaged(
                    extract_features(model, shown), extract_features(model, mirrored_crops(shown))))
                what = f"EfficientNet-Lite0 {layer}, flip-averaged"
                add(spec, "expression", what, view, features)
                if view != VIEWS[1]:
                    add(spec, "sex", what, view, features)
    print_table([{"task": task, "features": what, "view": view, **{s: cells.get(s, "") for s in specs}}
                 for (task, what, view), cells in table.items()])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="expression", choices=("sex", "expression", "sex_expression"))
    parser.add_argument("--layers", nargs="+", default=["pool", "stages"])
    parser.add_argument("--blur", type=float, nargs="+", default=[0.0], help="Gaussian blur sigma(s) in crop px")
    parser.add_argument("--align", choices=("landmarks", "eyes"), default="landmarks",
                        help="landmarks: the project's 68-point crop; eyes: aligned on the eye centres only")
    parser.add_argument("--harmonise", nargs="+", metavar="SPEC",
                        help="before/after table of capture harmonisation: none, or steps such as resample,jpeg")
    args = parser.parse_args()
    import pandas as pd
    import torch
    from hydra.utils import instantiate

    from facediag.audit.capture import grouped_cv_accuracy
    from facediag.core.crop import CropSpec
    from facediag.models.features import extract_features, flip_averaged, mirrored_crops
    from facediag.models.registry import create

    torch.set_num_threads(1)
    print_header("benchmarks/shortcut.py: is the signal in the face? (face only / face masked / whole crop)",
                 torch_threads=1, task=args.task, layers=" ".join(args.layers),
                 blur=" ".join(f"{b:g}" for b in args.blur), align=args.align,
                 harmonise=" | ".join(args.harmonise or ["-"]))  # fmt: skip
    if args.harmonise:
        harmonised_table(args.harmonise, args.layers)
        return
    cfg = compose(["data=london", f"data.task={args.task}", "preprocess=dlib"])
    records = instantiate(cfg.data.source).records()
    preprocessor = instantiate(cfg.preprocess)
    table = pd.DataFrame({"path": [r.path for r in records], "record": range(len(records))})
    faces = preprocessor.faces(table, CropSpec(224, "vggface2", 0.2), landmarks=True)
    kept, crops, points = faces.rows["record"].tolist(), faces.crops, faces.landmarks
    if args.align == "eyes":
        crops, points = eye_aligned(faces.paths, list(faces.kept), points)
    y = np.unique([records[i].label for i in kept], return_inverse=True)[1]
    groups = np.array([records[i].subject for i in kept], dtype=str)
    rows = []

    def add(blur: float, what: str, view: str, features: np.ndarray) -> None:
        accuracy, low, high = grouped_cv_accuracy(features, y, groups, "svm", (0, 1))
        rows.append({"blur sigma px": blur, "features": what, "view": view, "images": len(y),
                     "people": len(set(groups)), "accuracy [95% CI]": f"{accuracy:.3f} [{low:.3f}-{high:.3f}]"})
        print(rows[-1], flush=True)

    from facediag.core.imageio import read_rgb

    paths = [records[i].path for i in kept]
    add(0.0, "no CNN: file size (bytes)", "the photo file", np.array([[Path(p).stat().st_size] for p in paths], float))
    add(0.0, "no CNN: log Laplacian variance of the 4 corners", "raw photo corners (150 px)",
        corner_energy([read_rgb(p) for p in paths], 150))
    models = {layer: create("efficientnet_lite0", "imagenet", feature_layer=layer) for layer in args.layers}
    for sigma in args.blur:
        images = blurred(crops, sigma)
        energy = corner_energy(images)
        print(f"blur {sigma}: median corner log-energy per class "
              + ", ".join(f"{c}: {np.median(energy[y == c]):.2f}" for c in np.unique(y)), flush=True)  # fmt: skip
        add(sigma, "no CNN: log Laplacian variance of the 4 corners", "crop corners (32 px)", energy)
        for layer, model in models.items():
            for view, shown in masked_views(images, points).items():
                features = flip_averaged(extract_features(model, shown), extract_features(model, mirrored_crops(shown)))
                add(sigma, f"EfficientNet-Lite0 {layer}, flip-averaged", view, features)
    print_table(rows)


if __name__ == "__main__":
    main()
