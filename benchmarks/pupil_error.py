"""Alignment quality: the dlib backend's eye centres vs hand-placed pupils on the 102 neutral London photos.

``landmarks/NNN_03.tem`` holds hand-placed points; points 0 and 1 are the pupils (image left and
right). The backend's eye centre is the mean of landmarks 36-41 (image left) and 42-47 (image
right), the points the alignment is built on. Error = distance to the pupil / inter-pupil distance
(IPD, from the hand-placed pupils); the table gives mean, median, 95th percentile and max over
the photos (per photo: the mean of its two eyes), and the worst single eye. Target mean <= 0.05.

    FACEDIAG_DATA_DIR=/work/shared/data python benchmarks/pupil_error.py [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import numpy as np

from facediag.core.config import data_dir
from facediag.preprocess import DlibHogDetector, DlibLandmarker, Preprocessor

REPO = Path(__file__).resolve().parents[1]


def read_tem(path: Path) -> np.ndarray:
    """A webmorph .tem file: first line the point count, then ``x<TAB>y`` per point."""
    lines = path.read_text().split("\n")
    count = int(lines[0])
    points = np.array([[float(v) for v in line.split()[:2]] for line in lines[1 : count + 1]])
    if points.shape != (count, 2):
        raise ValueError(f"{path}: expected {count} points, read {points.shape}")
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", default=None, help="preprocessing cache (default: a fresh temp dir)")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    root = data_dir() / "london-faces"
    tems = sorted((root / "landmarks").glob("*_03.tem"))
    if not tems:
        raise SystemExit(f"no landmarks/*_03.tem under {root} (set FACEDIAG_DATA_DIR)")
    photos = [str(root / "neutral" / f"{tem.stem}.jpg") for tem in tems]
    with tempfile.TemporaryDirectory() as scratch:
        pre = Preprocessor(DlibHogDetector(), DlibLandmarker(), cache_dir=args.cache_dir or scratch,
                           n_workers=args.workers, progress=False)  # fmt: skip
        results = pre.landmarks(photos)

    per_photo, per_eye, offsets, skipped = [], [], [], []
    for tem, result in zip(tems, results, strict=True):
        if result.landmarks is None:
            skipped.append(f"{result.path}: {result.status} {result.reason}")
            continue
        pupils = read_tem(tem)[:2]
        pupils = pupils[np.argsort(pupils[:, 0])]  # image left, image right
        eyes = np.stack([result.landmarks[36:42].mean(0), result.landmarks[42:48].mean(0)])
        ipd = np.linalg.norm(pupils[1] - pupils[0])
        errors = np.linalg.norm(eyes - pupils, axis=1) / ipd
        offsets.extend((eyes - pupils) / ipd)
        per_eye.extend(errors)
        per_photo.append((errors.mean(), Path(result.path).name))

    values = np.array([v for v, _ in per_photo])
    worst = max(per_photo)
    import dlib

    print(f"machine: {platform.node()}; python {platform.python_version()}, dlib {dlib.__version__}; "
          f"workers {pre.n_workers}")  # fmt: skip
    print(f"dlib backend (HOG detect at {pre.detect_max_side} px, 68 landmarks at full resolution) vs "
          f"hand-placed pupils, {len(values)} neutral London photos\n")  # fmt: skip
    print(f"{'eye-centre error / IPD':28s} {'mean':>7s} {'median':>7s} {'p95':>7s} {'max':>7s}")
    print(f"{'per photo (mean of 2 eyes)':28s} {values.mean():7.4f} {np.median(values):7.4f} "
          f"{np.percentile(values, 95):7.4f} {values.max():7.4f}")  # fmt: skip
    eyes_all = np.array(per_eye)
    print(f"{'per eye':28s} {eyes_all.mean():7.4f} {np.median(eyes_all):7.4f} "
          f"{np.percentile(eyes_all, 95):7.4f} {eyes_all.max():7.4f}")  # fmt: skip
    bias = np.mean(offsets, axis=0)
    print(f"mean signed offset (eye centre - pupil) / IPD: dx {bias[0]:+.4f}, dy {bias[1]:+.4f} (y down)")
    print(f"\nworst photo: {worst[1]} ({worst[0]:.4f}); target mean <= 0.05: "
          f"{'met' if values.mean() <= 0.05 else 'NOT met'}")  # fmt: skip
    for line in skipped:
        print("not landmarked:", line)


if __name__ == "__main__":
    main()
