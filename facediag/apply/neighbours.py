"""Feature space of a run: the features the classifier sees, nearest training photos ("similar known people").

The run's Predictor says what its features are (``features(crops)``) and where the run keeps them
(``stored_features(role)``): DTL2 the frozen backbone's (``features/<role>.npz`` of the run, the new photo through
the same backbone); DTL1 the fine-tuned network's penultimate layer, computed for the run's photos once and kept in
``features/dtl1_<role>.npz``. Distances are Euclidean after standardising every feature with the training mean and
standard deviation (the space DTL2's SVM works in).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facediag.scoring.results import TEXT_COLUMNS
from facediag.strategies.predictor import FeatureSet

FIT_ROLES = ("train", "val")  # the photos the classifier was fitted on


def crop_features(run: Any, crops: np.ndarray) -> np.ndarray:
    """(N, D) features of aligned crops in the run's feature space (its Predictor's ``features``: DTL2 the
    backbone's feature layer, DTL1 the fine-tuned penultimate layer, DSIFT the visual-word histograms)."""
    return run.predictor.features(crops)


def _computed_features(run: Any, role: str) -> FeatureSet:
    """Features of one role's photos of split.csv, computed once and kept in the Predictor's
    ``computed_features_file`` (DTL1: ``features/dtl1_<role>.npz``)."""
    split = pd.read_csv(run.run_dir / "split.csv", dtype=TEXT_COLUMNS)
    rows = split[split["role"] == role]
    faces = run.preprocessor().faces(rows, run.crop)
    paths = np.array(faces.paths, dtype=str)
    labels = faces.rows["label"].to_numpy(dtype=str)
    features = crop_features(run, faces.crops)
    cache = run.predictor.computed_features_file(role)
    cache.parent.mkdir(exist_ok=True)
    np.savez_compressed(cache, features=features, labels=labels, paths=paths)
    return FeatureSet(features, labels, paths, np.full(len(paths), role))


def run_features(run: Any, roles: Sequence[str] = FIT_ROLES) -> FeatureSet:
    """Features of the run's photos of ``roles``, concatenated: as the run stored them, else computed once and
    kept (a strategy without a feature space refuses with the reason)."""
    parts = []
    for role in roles:
        part = run.predictor.stored_features(role)
        if part is None:
            part = _computed_features(run, role)
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
    thumbs = run.preprocessor().faces([str(reference.paths[j]) for j in chosen], run.crop)
    thumb = dict(zip(thumbs.paths, thumbs.crops, strict=True))
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
