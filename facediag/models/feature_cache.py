"""Per-image feature cache keyed by (backbone, weights, feature layer, preprocessing, crop, view, image sha256)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facediag.core.files import atomic_write, canonical_json, config_hash


class FeatureCache:
    """One ``.npy`` per image under ``<root>/<key hash>/``; ``key.json`` there says what the key was."""

    def __init__(self, root: str | os.PathLike, key: Mapping[str, Any]):
        text = canonical_json(key)
        self.key = dict(key)
        self.folder = Path(root) / config_hash(key)
        self.folder.mkdir(parents=True, exist_ok=True)
        key_file = self.folder / "key.json"
        if not key_file.exists():
            key_file.write_text(text)

    def _file(self, digest: str) -> Path:
        return self.folder / f"{digest}.npy"

    def get(self, digest: str) -> np.ndarray | None:
        """The cached feature vector of an image, or None (a damaged entry counts as missing)."""
        path = self._file(digest)
        if not path.is_file():
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            return None

    def put(self, digest: str, feature: np.ndarray) -> None:
        """Store atomically (a crash never leaves a half-written entry)."""
        atomic_write(self._file(digest), lambda handle: np.save(handle, np.asarray(feature, dtype=np.float32),
                                                                allow_pickle=False))

    def features(self, digests: Sequence[str], compute: Callable[[list[int]], np.ndarray]) -> list[np.ndarray]:
        """The feature vector of each image: read from the cache, the misses computed (``compute(indices)`` →
        their features, in that order; not called when nothing is missing) and stored."""
        found = [self.get(d) for d in digests]
        todo = [i for i, f in enumerate(found) if f is None]
        if todo:
            for i, feature in zip(todo, compute(todo), strict=True):
                self.put(digests[i], feature)
                found[i] = feature
        return found  # type: ignore[return-value]

    def stacked(self, digests: Sequence[str]) -> np.ndarray | None:
        """Every image's cached vector as one float32 array (rows in ``digests`` order), or None when any is missing:
        a warm run needs neither the CNN nor a predict pass."""
        if len(digests) == 0 or self.missing(digests):  # a cold run: nothing loaded here, the predict pass reads them
            return None
        found = [self.get(d) for d in digests]
        if any(f is None for f in found):  # a damaged entry (``get`` removed it)
            return None
        return np.stack(found).astype(np.float32)  # type: ignore[arg-type]

    def missing(self, digests: Sequence[str]) -> list[str]:
        return [d for d in digests if not self._file(d).is_file()]


def backbone_feature_cache(
    cache_dir: str | os.PathLike,
    backbone: Mapping[str, Any],
    weights: Mapping[str, Any],
    preprocess: Mapping[str, Any],
    mirrored: bool = False,
    region: Sequence[float] | None = None,
) -> FeatureCache:
    """The cache of one backbone's features: keyed by backbone, weights (+ pinned file), feature layer,
    preprocessing and crop (the Hydra ``backbone``, ``weights``, ``preprocess`` groups as plain dicts).
    ``mirrored``: the features of the horizontally mirrored crop (a fused source's ``flip``), a cache of their own;
    ``region``: (x0, y0, x1, y1) fractions, the features of that part of the crop resized to the input (a fused
    source's ``region``), a cache of their own too.

    DTL2 and identity grouping share it: a descriptor computed by one is reused by the other.
    """
    align = backbone["align"]
    ignored = ("cache_dir", "n_workers", "progress")
    key = {
        "backbone": backbone["name"],
        "feature_layer": backbone.get("feature_layer"),
        "weights": weights["name"],
        "weights_path": weights.get("path"),
        "weights_sha256": weights.get("sha256"),
        # no harmonisation: the key of every cache made before ``preprocess.harmonise`` existed
        "preprocess": {k: v for k, v in preprocess.items() if k not in ignored and (k != "harmonise" or v)},
        "crop": (int(align["size"]), str(align["template"]), float(align["padding"])),
    }
    if mirrored:  # only then: the unmirrored key (and so every existing cache folder) stays as it was
        key["view"] = "mirrored"
    if region is not None:  # likewise: only a region view's key holds the region
        key["region"] = [float(v) for v in region]
    return FeatureCache(Path(cache_dir) / "features", key)
