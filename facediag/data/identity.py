"""Who is who when nobody said: face-identity descriptors, pseudo-subjects and near-duplicate photos.

Descriptors are dlib's face-recognition ResNet (``dlib_resnet`` x ``dlib_faces``, 128-D, 150 px dlib
chip), cached per image sha256 in the same feature cache DTL2 uses. Thresholds were measured on the
London faces (``benchmarks/identity.py``, ``benchmarks/RESULTS.md``):

- same person, neutral vs smiling: Euclidean distance max 0.476; different people: min 0.451;
- pseudo-subjects: complete-linkage clustering (no chaining: every pair in a group is within the
  threshold) at ``IDENTITY_THRESHOLD``;
- near-duplicates (one photo re-encoded / resized / lightly cropped): descriptor distance
  <= ``NEAR_DUPLICATE_DISTANCE`` AND a perceptual hash (imagehash pHash, 16x16 = 256 bits) of the
  aligned face chip within ``NEAR_DUPLICATE_HASH_BITS`` bits. Measured: 160 copies of 40 photos at
  descriptor distance <= 0.098 and <= 46 bits, all caught; the closest other photo of the same person
  is 0.104 away (none flagged), different people >= 0.451. The margin to same-person photos is thin:
  copies are not "far below" the same-person distance for the descriptor. A whole-image pHash does not
  separate at all (two different London people, same studio background, are 4 bits apart; a 5 % crop
  of one photo up to 16). Images without a face are compared by their bytes only (sha256).
- across data sets (new photos vs a run's training people) a photo is called the same person only within
  ``CROSS_SET_IDENTITY_THRESHOLD`` (0.40): the share of photos of people absent from the reference set that have
  a reference photo within a threshold is, at 0.40 / 0.45 / 0.5: London split (22 vs 80 people, 200 draws)
  0.000 / 0.000 / 0.082; Yale (15 people) vs London 0/30, 0/30, 2/30; JAFFE (10 Japanese women) vs London
  0/61, 4/61, 28/61 (dlib's descriptor packs East Asian faces closer). 99.0 % of London's same-person pairs are
  within 0.35 already (``benchmarks/identity.py --other <folder>``). Within one set
  the grouping keeps 0.5: a missed same-person pair leaks a person across a split, a false merge only keeps
  two people on one side.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facediag.core.crop import CropSpec
from facediag.models.feature_cache import FeatureCache, backbone_feature_cache
from facediag.preprocess.faces import as_rows

log = logging.getLogger(__name__)

IDENTITY_BACKBONE: dict[str, Any] = {
    "name": "dlib_resnet",
    "feature_layer": "descriptor",
    "align": {"template": "dlib", "padding": 0.25, "size": 150},
}
IDENTITY_WEIGHTS: dict[str, Any] = {"name": "dlib_faces", "path": None, "sha256": None}
IDENTITY_THRESHOLD = 0.5
CROSS_SET_IDENTITY_THRESHOLD = 0.40
LINKAGE = "complete"
NEAR_DUPLICATE_DISTANCE = 0.10
NEAR_DUPLICATE_HASH_BITS = 48
CHIP_HASH_SIZE = 16
IDENTICAL, NEAR_DUPLICATE, SAME_IDENTITY = "identical", "near_duplicate", "same_identity"
OVERLAP_COLUMNS = ["kind", "reference", "query", "distance", "hash_bits"]


def preprocess_key(preprocess_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The preprocessing config as a plain dict (the feature cache key part)."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(preprocess_cfg, DictConfig):
        return dict(OmegaConf.to_container(preprocess_cfg, resolve=True))  # type: ignore[arg-type]
    return dict(preprocess_cfg)


@dataclass
class Descriptors:
    """One row per input path: ``vectors`` (N, 128) float32, NaN rows where no face was found."""

    paths: list[str]
    sha256: list[str]
    vectors: np.ndarray
    status: list[str]
    chip_hashes: np.ndarray  # (N, 256) bool: pHash of the aligned chip (zeros without a face)

    @property
    def has_face(self) -> np.ndarray:
        return ~np.isnan(self.vectors).any(axis=1)


def descriptor_cache(cache_dir: str | os.PathLike, preprocess_cfg: Mapping[str, Any]) -> FeatureCache:
    """The dlib descriptor cache (shared with DTL2 runs of ``dlib_resnet`` x ``dlib_faces``); identity is read from
    plain crops, whatever ``preprocess.harmonise`` gives the model (the threshold was measured on plain ones)."""
    plain = {k: v for k, v in preprocess_key(preprocess_cfg).items() if k != "harmonise"}
    return backbone_feature_cache(cache_dir, IDENTITY_BACKBONE, IDENTITY_WEIGHTS, plain)


def face_descriptors(
    images: Sequence[str] | pd.DataFrame,
    preprocessor: Any,
    preprocess_cfg: Mapping[str, Any],
    cache_dir: str | os.PathLike,
    batch_size: int = 32,
) -> Descriptors:
    """dlib identity descriptors of ``images`` (paths, or a table with ``path`` and ``sha256``: the files are not
    hashed again); landmarks, chips and descriptors all cached per sha256."""
    table = as_rows(images)
    faces = preprocessor.unharmonised().faces(table.assign(position=np.arange(len(table))),
                                              CropSpec.of(IDENTITY_BACKBONE["align"]))
    paths, results, crops, kept = [r.path for r in faces.results], faces.results, faces.crops, faces.kept
    cache = descriptor_cache(cache_dir, preprocess_cfg)
    vectors = np.full((len(paths), 128), np.nan, dtype=np.float32)
    hashes = np.zeros((len(paths), CHIP_HASH_SIZE**2), dtype=bool)

    def compute(todo: list[int]) -> np.ndarray:
        from facediag.models import create, extract_features

        weights_dir = Path(cache_dir) / "weights"
        net = create("dlib_resnet", "dlib_faces", cache_dir=weights_dir, feature_layer="descriptor")
        return extract_features(net, crops[todo], batch_size=batch_size)

    found = cache.features([r.sha256 for r in kept], compute)
    for position, feature, crop in zip(faces.rows["position"], found, crops, strict=True):
        vectors[position] = feature
        hashes[position] = chip_hash(crop)
    return Descriptors(paths, [r.sha256 for r in results], vectors, [r.status for r in results], hashes)


def identity_clusters(vectors: np.ndarray, threshold: float = IDENTITY_THRESHOLD, method: str = LINKAGE) -> np.ndarray:
    """Cluster id per row (0..K-1); rows without a descriptor (NaN) get -1.

    Agglomerative clustering with ``method`` linkage (scipy) cut at ``threshold``: with complete
    linkage every pair inside a group is closer than the threshold, so groups never chain.
    """
    from scipy.cluster.hierarchy import fcluster, linkage

    labels = np.full(len(vectors), -1, dtype=np.int64)
    rows = np.flatnonzero(~np.isnan(vectors).any(axis=1))
    if len(rows) == 1:
        labels[rows] = 0
    elif len(rows) > 1:
        tree = linkage(vectors[rows].astype(np.float64), method=method, metric="euclidean")
        labels[rows] = fcluster(tree, t=threshold, criterion="distance") - 1
    return labels


def chip_hash(chip: np.ndarray) -> np.ndarray:
    """pHash (imagehash, 16x16 bits, flattened bool) of an aligned uint8 RGB face chip."""
    import imagehash
    from PIL import Image

    return np.asarray(imagehash.phash(Image.fromarray(chip), hash_size=CHIP_HASH_SIZE).hash, dtype=bool).ravel()


def hash_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances (bits) between the rows of two bool hash arrays."""
    from scipy.spatial.distance import cdist

    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.int64)
    return np.rint(cdist(a, b, metric="hamming") * a.shape[1]).astype(np.int64)


def descriptor_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between rows of ``a`` and ``b``; NaN where either has no face."""
    from scipy.spatial.distance import cdist

    return cdist(a.astype(np.float64), b.astype(np.float64))


def overlap_pairs(
    a: Descriptors, b: Descriptors, same_set: bool = False, identity_threshold: float = IDENTITY_THRESHOLD
) -> list[tuple[int, int, str, float, int]]:
    """Pairs (i, j, kind, descriptor distance, chip-hash bits) that are identical bytes, near-duplicates or
    the same identity (kind in that order of precedence). ``same_set``: a is b; only i < j pairs.
    """
    dist = descriptor_distances(a.vectors, b.vectors)
    bits = hash_distances(a.chip_hashes, b.chip_hashes)
    sha_a, sha_b = a.sha256, b.sha256
    sha_a_arr, sha_b_arr = np.asarray(sha_a, dtype=object), np.asarray(sha_b, dtype=object)
    identical = (sha_a_arr[:, None] == sha_b_arr[None, :]) & (sha_a_arr[:, None] != "")
    with np.errstate(invalid="ignore"):
        near = (dist <= NEAR_DUPLICATE_DISTANCE) & (bits <= NEAR_DUPLICATE_HASH_BITS)
        same = dist <= identity_threshold
    hit = identical | near | same
    if same_set:
        hit &= np.triu(np.ones_like(hit, dtype=bool), k=1)
    pairs = []
    for i, j in zip(*np.nonzero(hit), strict=True):
        kind = IDENTICAL if identical[i, j] else NEAR_DUPLICATE if near[i, j] else SAME_IDENTITY
        pairs.append((int(i), int(j), kind, float(dist[i, j]), int(bits[i, j])))
    return pairs


def find_overlaps(
    reference: Sequence[tuple[str, str]],
    query: Sequence[tuple[str, str]],
    preprocessor: Any,
    preprocess_cfg: Mapping[str, Any],
    cache_dir: str | os.PathLike,
    identity_threshold: float = CROSS_SET_IDENTITY_THRESHOLD,
) -> pd.DataFrame:
    """Images of ``query`` that overlap ``reference`` (both lists of (path, sha256)).

    One row per overlapping pair: ``kind`` (identical | near_duplicate | same_identity), ``reference``,
    ``query`` (paths), ``distance`` (dlib descriptor distance; NaN without a face) and ``hash_bits``
    (pHash Hamming distance of the aligned chips). E.g. a training set vs an external validation set.
    """
    ref, qry = (face_descriptors(pd.DataFrame([(str(p), s or None) for p, s in images], columns=["path", "sha256"]),
                                 preprocessor, preprocess_cfg, cache_dir) for images in (reference, query))
    pairs = overlap_pairs(ref, qry, identity_threshold=identity_threshold)
    rows = [(kind, ref.paths[i], qry.paths[j], d, bits) for i, j, kind, d, bits in pairs]
    return pd.DataFrame(rows, columns=OVERLAP_COLUMNS)


@dataclass
class IdentityReport:
    """What identity grouping found in a table of images."""

    groups: pd.DataFrame  # path, label, subject, subject_source, identity (cluster id; -1: no face)
    near_duplicates: list[tuple[str, str, float]]  # (path, path, descriptor distance)
    cross_class: list[pd.DataFrame]  # one frame (path, label) per identity spanning several classes

    @property
    def multi_image_identities(self) -> int:
        counts = self.groups.loc[self.groups["identity"] >= 0, "identity"].value_counts()
        return int((counts > 1).sum())

    def summary(self) -> str:
        """Lines for the console: identities with several images, groups spanning classes, near-duplicates."""
        regrouped = int((self.groups["subject_source"] == "identity").sum())
        no_face = int((self.groups["identity"] < 0).sum())
        lines = [
            f"identity grouping: {len(self.groups)} images, {self.multi_image_identities} identities with several "
            f"images; {regrouped} images took an identity subject; {no_face} without a face keep their own subject"
        ]
        for frame in self.cross_class:
            listing = ", ".join(f"{p} ({lab})" for p, lab in zip(frame["path"], frame["label"], strict=True))
            lines.append(f"WARNING: one face under several classes (check the labels): {listing}")
        for a, b, d in self.near_duplicates:
            lines.append(f"near-duplicate photos (descriptor distance {d:.3f}): {a}, {b}")
        return "\n".join(lines)


def _one_named_person(rows: pd.DataFrame) -> bool:
    """The subjects CSV names every image of the group and names one person: a state label (e.g. neutral and
    smiling photos of one person) is expected under several classes, not a labelling error."""
    return bool((rows["subject_source"] == "csv").all() and rows["subject"].nunique() == 1)


def group_by_identity(table: pd.DataFrame, found: Descriptors, threshold: float = IDENTITY_THRESHOLD) -> IdentityReport:
    """Give the images without a known subject (``subject_source`` "file") the subject of their face identity.

    ``table`` has `path, label, subject, subject_source` and ``found`` its descriptors, row for row.
    Identities are complete-linkage clusters. A cluster holding images with a CSV subject hands its most
    frequent CSV subject to its "file" images (the CSV always wins where it names the file); otherwise
    its images share a new subject ``identity-<n>`` (source "identity"). Images alone in their cluster
    and images without a face keep their own subject ("file").
    """
    frame = table[["path", "label", "subject", "subject_source"]].reset_index(drop=True).copy()
    frame["identity"] = identity_clusters(found.vectors, threshold)
    for cluster, rows in frame[frame["identity"] >= 0].groupby("identity"):
        if len(rows) < 2:
            continue
        given = rows.loc[rows["subject_source"] == "csv", "subject"]
        unnamed = rows.index[rows["subject_source"] == "file"]
        subject = given.value_counts().index[0] if len(given) else f"identity-{cluster:04d}"
        frame.loc[unnamed, "subject"] = subject
        frame.loc[unnamed, "subject_source"] = "identity"
    cross = [
        rows[["path", "label"]].reset_index(drop=True)
        for _, rows in frame[frame["identity"] >= 0].groupby("identity")
        if rows["label"].nunique() > 1 and not _one_named_person(rows)
    ]
    near = [
        (found.paths[i], found.paths[j], d)
        for i, j, kind, d, _ in overlap_pairs(found, found, same_set=True, identity_threshold=threshold)
        if kind == NEAR_DUPLICATE
    ]
    return IdentityReport(frame, near, cross)
