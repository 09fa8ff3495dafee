"""Feature space of a run: the features the classifier sees, nearest training photos ("similar known people").

DTL2: the frozen backbone's features (``features/<role>.npz`` of the run, the new photo through the same
backbone). DTL1: the fine-tuned network's penultimate layer (the input of its head), computed for the
run's training photos once and kept in ``features/dtl1_<role>.npz``. Distances are Euclidean after
standardising every feature with the training mean and standard deviation (the space DTL2's SVM works in).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FIT_ROLES = ("train", "val")  # the photos the classifier was fitted on


@dataclass
class FeatureSet:
    """Features of a run's photos with their labels, paths and roles."""

    features: np.ndarray
    labels: np.ndarray
    paths: np.ndarray
    roles: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)


def crop_features(run: Any, crops: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """(N, D) features of aligned crops: DTL2 the backbone's feature layer, DTL1 the fine-tuned penultimate layer."""
    from facediag.apply.saliency import backbone_of, class_score_module
    from facediag.models import extract_features

    if run.strategy not in ("dtl1", "dtl2"):
        raise ValueError(f"{run.run_dir}: feature neighbours need a DTL1 / DTL2 run, not {run.strategy}")
    layer = "penultimate" if run.strategy == "dtl1" else "features"
    return extract_features(backbone_of(class_score_module(run)), crops, batch_size=batch_size, layer=layer)


def _load(path: Path, role: str) -> FeatureSet:
    """A ``features/*.npz`` of the run (``features``, ``labels``, ``paths``) as the photos of ``role``."""
    stored = np.load(path)
    return FeatureSet(stored["features"], stored["labels"], stored["paths"], np.full(len(stored["paths"]), role))


def _computed_features(run: Any, role: str) -> FeatureSet:
    """DTL1: penultimate features of one role's photos of split.csv, cached in ``features/dtl1_<role>.npz``."""
    cache = run.run_dir / "features" / f"dtl1_{role}.npz"
    if cache.is_file():
        return _load(cache, role)
    split = pd.read_csv(run.run_dir / "split.csv")
    rows = split[split["role"] == role]
    crops, kept = run.preprocessor().crops(rows["path"].astype(str).tolist(), *run.crop)
    label = dict(zip(rows["path"].astype(str), rows["label"].astype(str), strict=True))
    paths = np.array([r.path for r in kept], dtype=str)
    labels = np.array([label[p] for p in paths], dtype=str)
    features = crop_features(run, crops)
    cache.parent.mkdir(exist_ok=True)
    np.savez_compressed(cache, features=features, labels=labels, paths=paths)
    return FeatureSet(features, labels, paths, np.full(len(paths), role))


def _stored_features(run_dir: Path, role: str) -> FeatureSet | None:
    """DTL2's ``features/<role>.npz`` (None when absent)."""
    path = run_dir / "features" / f"{role}.npz"
    return _load(path, role) if path.is_file() else None


def run_features(run: Any, roles: Sequence[str] = FIT_ROLES) -> FeatureSet:
    """Features of the run's photos of ``roles``, concatenated (DTL2 stored, DTL1 computed once and cached)."""
    parts = []
    for role in roles:
        part = _stored_features(run.run_dir, role) if run.strategy == "dtl2" else _computed_features(run, role)
        if part is None:
            raise FileNotFoundError(f"{run.run_dir}: no features/{role}.npz (a DTL2 run writes it)")
        if len(part):
            parts.append(part)
    if not parts:
        raise ValueError(f"{run.run_dir}: no photos of roles {list(roles)}")
    fields = ("features", "labels", "paths", "roles")
    return FeatureSet(*(np.concatenate([getattr(part, name) for part in parts]) for name in fields))


def nearest(query: np.ndarray, reference: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, distances), each (Q, k): the ``k`` nearest reference rows of every query row (sklearn), after
    standardising with the reference's mean and standard deviation."""
    from sklearn.neighbors import NearestNeighbors

    mean, std = reference.mean(axis=0), reference.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    index = NearestNeighbors(n_neighbors=min(k, len(reference))).fit((reference - mean) / std)
    distances, indices = index.kneighbors((query - mean) / std)
    return indices, distances


def neighbour_sheet(
    query: np.ndarray, title: str, thumbnails: np.ndarray, captions: Sequence[str], png: Path
) -> Path:
    """One row: the query crop, then the neighbours' crops with their captions (PNG)."""
    from facediag.scoring.plots import image_grid, save_figure

    pictures = [query, *thumbnails]
    return save_figure(image_grid(pictures, [title, *captions], len(pictures), cell=(2.2, 2.9)), png)


def show_neighbours(run: Any, paths: Sequence[str], crops: np.ndarray, k: int, out_dir: Path) -> list[Path]:
    """Print and draw the ``k`` most similar training photos of each crop (``paths[i]``'s aligned face);
    writes ``<stem>_neighbours.png`` into ``out_dir`` and returns those files."""
    if len(crops) == 0:
        return []
    reference = run_features(run)
    indices, distances = nearest(crop_features(run, crops), reference.features, k)
    chosen = sorted({int(j) for row in indices for j in row})
    thumbs, kept = run.preprocessor().crops([str(reference.paths[j]) for j in chosen], *run.crop)
    thumb = {r.path: crop for r, crop in zip(kept, thumbs, strict=True)}
    blank = np.full(crops.shape[1:], 255, np.uint8)
    written = []
    for path, crop, row, dist in zip(paths, crops, indices, distances, strict=True):
        print(f"\n{path}: {len(row)} nearest training photos (standardised feature distance)")
        captions = []
        for rank, (j, d) in enumerate(zip(row, dist, strict=True), start=1):
            print(f"  {rank}. {reference.labels[j]:<16} d={d:7.2f}  {reference.paths[j]}")
            captions.append(f"{rank}. {reference.labels[j]}\nd={d:.1f}  {Path(str(reference.paths[j])).name}")
        images = np.stack([thumb.get(str(reference.paths[j]), blank) for j in row])
        png = out_dir / f"{Path(path).stem}_neighbours.png"
        written.append(neighbour_sheet(crop, f"{Path(path).name}\n(query)", images, captions, png))
        print(f"  thumbnails: {png}")
    return written
