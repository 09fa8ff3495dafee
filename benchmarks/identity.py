"""Identity grouping and near-duplicate detection measured on the London faces (102 people x 2 photos).

1. dlib descriptor distances: same person (neutral vs smiling) vs different people.
2. Pseudo-subjects by agglomerative clustering (single / average / complete linkage) at several
   thresholds: % of same-person pairs recovered (both photos in one group), false merges (pairs of
   different people in one group), largest group, number of groups.
3. Near-duplicates: ``--n-copies`` photos re-encoded (JPEG q=40), resized (x0.5), lightly cropped
   (5 % off each side) and cropped + resized; their descriptor distance and pHash Hamming distances
   (of the aligned chip, and of the whole image) to the original, next to those of same-person and
   different-person pairs; how many copies the rule catches, how many other photos it flags.

    FACEDIAG_DATA_DIR=/work/shared/data python benchmarks/identity.py
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
from pathlib import Path

import numpy as np
from common import print_header
from PIL import Image

from facediag.core.config import CONFIG_DIR
from facediag.data.identity import (
    IDENTITY_THRESHOLD,
    LINKAGE,
    NEAR_DUPLICATE,
    NEAR_DUPLICATE_DISTANCE,
    NEAR_DUPLICATE_HASH_BITS,
    face_descriptors,
    hash_distances,
    identity_clusters,
    overlap_pairs,
)
from facediag.data.london import LondonFaces
from facediag.training.config import register_configs

VARIANTS = {
    "re-encoded JPEG q=40": lambda im: im,
    "resized x0.5": lambda im: im.resize((im.width // 2, im.height // 2), Image.BILINEAR),
    "cropped 5% each side": lambda im: im.crop(
        (im.width // 20, im.height // 20, im.width - im.width // 20, im.height - im.height // 20)
    ),
    "cropped 5% + resized x0.5": lambda im: im.crop(
        (im.width // 20, im.height // 20, im.width - im.width // 20, im.height - im.height // 20)
    ).resize((im.width * 9 // 20, im.height * 9 // 20), Image.BILINEAR),
}


def compose(data_dir: str, cache_dir: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register_configs()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        overrides = [f"paths.data_dir={data_dir}", f"paths.cache_dir={cache_dir}", "preprocess.progress=false"]
        return hydra_compose("train", overrides=overrides)


def pair_stats(groups: np.ndarray, people: np.ndarray) -> dict[str, float]:
    """Same-person pairs recovered, different-person pairs merged, largest group."""
    same = people[:, None] == people[None, :]
    together = (groups[:, None] == groups[None, :]) & (groups[:, None] >= 0)
    upper = np.triu(np.ones_like(same), k=1)
    n_same = int((same & upper).sum())
    recovered = int((same & together & upper).sum())
    false = int((~same & together & upper).sum())
    sizes = np.bincount(groups[groups >= 0])
    return {
        "recovered": 100.0 * recovered / max(n_same, 1),
        "false_pairs": false,
        "largest": int(sizes.max()),
        "groups": int(len(sizes)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("FACEDIAG_DATA_DIR", "data"))
    default_cache = os.environ.get("FACEDIAG_CACHE_DIR", str(Path.home() / ".cache/facediag"))
    parser.add_argument("--cache-dir", default=default_cache)
    parser.add_argument("--n-copies", type=int, default=40)
    parser.add_argument(
        "--other",
        action="append",
        default=[],
        metavar="FOLDER",
        help="a folder of photos of people who are not in London: its false-same-person rate against London",
    )
    args = parser.parse_args()
    import torch
    from hydra.utils import instantiate

    torch.set_num_threads(1)
    print_header("Identity grouping and near-duplicates on the London faces", torch_threads=1)
    cfg = compose(args.data_dir, args.cache_dir)
    preprocessor = instantiate(cfg.preprocess)
    records = LondonFaces(Path(args.data_dir) / "london-faces", task="expression", download=False).records()
    paths = [r.path for r in records]
    people = np.array([r.subject for r in records], dtype=object)
    found = face_descriptors(paths, preprocessor, cfg.preprocess, args.cache_dir)
    ok = found.has_face
    print(f"\n{len(paths)} photos of {len(set(people))} people; {int(ok.sum())} with a face descriptor")
    vectors, people = found.vectors[ok], people[ok]
    from scipy.spatial.distance import cdist

    dist = cdist(vectors, vectors)
    same = people[:, None] == people[None, :]
    upper = np.triu(np.ones_like(same), k=1)
    same_d, diff_d = dist[same & upper], dist[~same & upper]
    print("\n## Descriptor distance (Euclidean, 128-D)\n")
    print("| pairs | n | min | mean | max |\n|---|---|---|---|---|")
    for name, d in (("same person (neutral vs smiling)", same_d), ("different people", diff_d)):
        print(f"| {name} | {len(d)} | {d.min():.3f} | {d.mean():.3f} | {d.max():.3f} |")
    for t in (0.45, 0.5, 0.55, 0.6):
        missed, within = (same_d > t).sum(), (diff_d <= t).sum()
        print(f"threshold {t}: same-person pairs missed {missed}, different-people pairs within {within}")

    print("\n## Pseudo-subjects: agglomerative clustering of all photos\n")
    print("| linkage | threshold | same-person pairs recovered | false merges (pairs) | largest group | groups |")
    print("|---|---|---|---|---|---|")
    for method, t in itertools.product(("single", "average", "complete"), (0.45, 0.5, 0.55, 0.6)):
        s = pair_stats(identity_clusters(vectors, t, method), people)
        chosen = " **(default)**" if (method, t) == (LINKAGE, IDENTITY_THRESHOLD) else ""
        cells = f"{s['recovered']:.1f}% | {s['false_pairs']} | {s['largest']} | {s['groups']}"
        print(f"| {method}{chosen} | {t} | {cells} |")

    cross_set_rates(
        dist,
        people,
        [
            (folder, face_descriptors(image_files(folder), preprocessor, cfg.preprocess, args.cache_dir))
            for folder in args.other
        ],
        vectors,
    )

    whole = whole_image_hashes(list(np.asarray(paths)[ok]))
    chips = found.chip_hashes[ok]
    print("\n## Near-duplicates: copies of one photo vs other photos\n")
    print("| pair | n | descriptor distance min / median / max | chip pHash bits (256) | whole-image pHash (64) |")
    print("|---|---|---|---|---|")
    chip_bits, whole_bits = hash_distances(chips, chips), hash_distances(whole, whole)
    for name, mask in (("same person, other photo", same & upper), ("different people", ~same & upper)):
        row(name, dist[mask], chip_bits[mask], whole_bits[mask])
    rng = np.random.default_rng(0)
    originals = list(rng.choice(np.asarray(paths)[ok], size=min(args.n_copies, int(ok.sum())), replace=False))
    base = face_descriptors(originals, preprocessor, cfg.preprocess, args.cache_dir)
    base_whole = whole_image_hashes(originals)
    caught = 0
    with tempfile.TemporaryDirectory() as tmp:
        for v, (name, make) in enumerate(VARIANTS.items()):
            files = []
            for k, path in enumerate(originals):
                with Image.open(path) as image:
                    files.append(str(Path(tmp) / f"{k}_{v}.jpg"))
                    make(image.convert("RGB")).save(files[-1], quality=40 if v == 0 else 85)
            copy = face_descriptors(files, preprocessor, cfg.preprocess, args.cache_dir)
            pairs = overlap_pairs(base, copy)
            caught += sum(i == j and kind == NEAR_DUPLICATE for i, j, kind, _, _ in pairs)
            d = np.linalg.norm(copy.vectors - base.vectors, axis=1)
            b = np.diagonal(hash_distances(base.chip_hashes, copy.chip_hashes))
            w = np.diagonal(hash_distances(base_whole, whole_image_hashes(files)))
            keep = ~np.isnan(d)
            row(f"copy: {name}", d[keep], b[keep], w[keep])
    flagged = (dist <= NEAR_DUPLICATE_DISTANCE) & (chip_bits <= NEAR_DUPLICATE_HASH_BITS)
    print(f"\nrule: near-duplicate when descriptor distance <= {NEAR_DUPLICATE_DISTANCE} "
          f"and chip pHash distance <= {NEAR_DUPLICATE_HASH_BITS} bits")  # fmt: skip
    print(
        f"copies caught: {caught} of {len(originals) * len(VARIANTS)}; flagged among other photos: "
        f"same person {int((flagged & same & upper).sum())}, different people {int((flagged & ~same & upper).sum())}"
    )


CROSS_SET_THRESHOLDS = (0.35, 0.4, 0.42, 0.45, 0.47, 0.5, 0.55, 0.6)


def image_files(folder: str) -> list[str]:
    """Every photo under ``folder`` that facediag reads (TIFF included: JAFFE's format), sorted; a folder without
    one is an error naming it."""
    from facediag.core.imageio import is_image_file

    found = sorted(str(p) for p in Path(folder).rglob("*") if p.is_file() and is_image_file(p))
    if not found:
        raise SystemExit(f"--other {folder}: no image file below it")
    return found


def cross_set_rates(dist: np.ndarray, people: np.ndarray, others: list, london: np.ndarray) -> None:
    """Per-photo false-same-person rate: a photo of someone absent from the reference set has a reference
    photo within the threshold. London split in two (80 reference people, the other 22 as queries, 200
    draws), then each ``--other`` folder (people who are not in London) against all of London."""
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(0)
    unique = np.unique(people)
    london_rates = {t: [] for t in CROSS_SET_THRESHOLDS}
    for _ in range(200):
        ref = np.isin(people, rng.choice(unique, size=min(80, len(unique) - 1), replace=False))
        nearest = dist[np.ix_(~ref, ref)].min(axis=1)
        for t in CROSS_SET_THRESHOLDS:
            london_rates[t].append(float((nearest <= t).mean()))
    same = people[:, None] == people[None, :]
    same_d = dist[same & np.triu(np.ones_like(same), k=1)]
    print("\n## Cross-set false-same-person rate (photos of people absent from the reference set)\n")
    header = ["London split (22 vs 80 people)"] + [f"{Path(f).name} vs London" for f, _ in others]
    print("| threshold | same-person London pairs within | " + " | ".join(header) + " |")
    print("|---" * (2 + len(header)) + "|")
    nearest_other = []
    for folder, found in others:
        keep = found.has_face
        print(f"<!-- {folder}: {len(found.paths)} photos, {int(keep.sum())} with a face -->")
        nearest_other.append(cdist(found.vectors[keep], london).min(axis=1))
    for t in CROSS_SET_THRESHOLDS:
        cells = [f"{np.mean(london_rates[t]):.3f}"]
        cells += [f"{(n <= t).mean():.3f} ({int((n <= t).sum())}/{len(n)})" for n in nearest_other]
        print(f"| {t} | {(same_d <= t).mean():.3f} | " + " | ".join(cells) + " |")


def whole_image_hashes(paths: list[str]) -> np.ndarray:
    """64-bit pHash of each whole upright image (the alternative measured against the chip hash)."""
    import imagehash
    from PIL import ImageOps

    hashes = []
    for path in paths:
        with Image.open(path) as image:
            hashes.append(np.asarray(imagehash.phash(ImageOps.exif_transpose(image)).hash, dtype=bool).ravel())
    return np.array(hashes)


def row(name: str, d: np.ndarray, chip: np.ndarray, whole: np.ndarray) -> None:
    def stats(x: np.ndarray, fmt: str) -> str:
        return " / ".join(format(v, fmt) for v in (x.min(), np.median(x), x.max()))

    print(f"| {name} | {len(d)} | {stats(d, '.3f')} | {stats(chip, '.0f')} | {stats(whole, '.0f')} |")


if __name__ == "__main__":
    main()
