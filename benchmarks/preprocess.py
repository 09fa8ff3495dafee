"""Preprocessing throughput (images/s) on the 204 London photos: cold and warm passes vs a bare dlib loop.

- baseline: a bare loop in one process, dlib HOG detector + 68-point predictor on the full-resolution
  photo (``read_rgb``, ``detector(image, 0)``, ``predictor(image, box)``), no cache.
- cold: ``Preprocessor.landmarks`` on an empty cache (downscaled grayscale detection, full-res
  landmarks), with ``--workers`` processes and with 1.
- warm: the same call again (every image a cache hit: sha256 + a JSON read).
- crops cold / warm: ``Preprocessor.faces(paths)`` (the default crop, 150 px dlib) after the landmarks are cached.

The passes alternate within each repeat so that all see the same machine load (this machine is
shared); the table gives medians over ``--repeats`` and the CPU seconds per image (parent +
workers), which do not depend on how busy the other cores were. Also per-stage median timings.

    FACEDIAG_DATA_DIR=/work/shared/data python benchmarks/preprocess.py --workers 2
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from facediag.core.config import data_dir
from facediag.core.download import sha256_file
from facediag.core.imageio import read_rgb
from facediag.preprocess import DlibHogDetector, DlibLandmarker, Preprocessor
from facediag.preprocess.landmark_weights import dlib_model_path
from facediag.preprocess.pipeline import downscale

REPO = Path(__file__).resolve().parents[1]


def london_paths(limit: int | None) -> list[str]:
    root = data_dir() / "london-faces"
    paths = sorted(str(p) for folder in ("neutral", "smiling") for p in (root / folder).glob("*.jpg"))
    if not paths:
        raise SystemExit(f"London faces not found at {root} (set FACEDIAG_DATA_DIR)")
    return paths[:limit] if limit else paths


def cpu_seconds() -> float:
    """User + system CPU of this process and its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(run: Callable[[], object]) -> tuple[float, float, object]:
    cpu, wall = cpu_seconds(), time.perf_counter()
    out = run()
    return time.perf_counter() - wall, cpu_seconds() - cpu, out


def bare_loop(paths: list[str]) -> int:
    """The naive pipeline: full-resolution dlib detection + landmarks, one process, no cache."""
    import dlib

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(dlib_model_path("shape_predictor_68_face_landmarks.dat")))
    found = 0
    for path in paths:
        image = read_rgb(path)
        boxes = detector(image, 0)
        if boxes:
            predictor(image, max(boxes, key=lambda b: b.area()))
            found += 1
    return found


def stage_timings(paths: list[str], side: int) -> dict[str, float]:
    """Median milliseconds per image of each step of the cold pass, in this process."""
    detector, landmarker = DlibHogDetector(), DlibLandmarker()
    landmarker.model  # noqa: B018  (load outside the timing)
    steps: dict[str, list[float]] = {k: [] for k in ("sha256", "decode", "downscale", "detect", "landmarks")}
    for path in paths:
        t0 = time.perf_counter()
        sha256_file(path)
        t1 = time.perf_counter()
        image = read_rgb(path)
        t2 = time.perf_counter()
        small = downscale(image, side)
        t3 = time.perf_counter()
        found = detector.detect(small)
        t4 = time.perf_counter()
        if found:
            scale = image.shape[1] / small.shape[1]
            landmarker.landmarks(image, tuple(v * scale for v in found[0].box))
        t5 = time.perf_counter()
        for key, seconds in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
            steps[key].append(seconds)
    return {key: 1000 * statistics.median(values) for key, values in steps.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="cold-pass worker processes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=0, help="first N photos only (0: all 204)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the slow full-resolution loop")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    paths = london_paths(args.images)
    count = len(paths)
    load_before = os.getloadavg()

    rows: dict[str, list[tuple[float, float]]] = {}

    def record(name: str, run: Callable[[], object]) -> object:
        wall, cpu, out = timed(run)
        rows.setdefault(name, []).append((wall, cpu))
        return out

    for _ in range(args.repeats):
        cache = Path(tempfile.mkdtemp(prefix="facediag-bench-"))
        try:
            if not args.no_baseline:
                found = record("baseline: full-res dlib loop, 1 process", lambda: bare_loop(paths))
                assert found == count, f"bare loop found {found}/{count} faces"
            for workers in sorted({1, args.workers}):
                shutil.rmtree(cache / "preprocess", ignore_errors=True)
                pre = Preprocessor(DlibHogDetector(), DlibLandmarker(), cache_dir=cache, n_workers=workers,
                                   progress=False)  # fmt: skip
                results = record(f"cold landmarks, {workers} worker(s)", lambda p=pre: p.landmarks(paths))
                assert all(r.status == "ok" for r in results), [r for r in results if r.status != "ok"][:3]
            pre = Preprocessor(DlibHogDetector(), DlibLandmarker(), cache_dir=cache, n_workers=args.workers,
                               progress=False)  # fmt: skip
            for _ in range(3):
                record("warm landmarks (cache hits)", lambda p=pre: p.landmarks(paths))
            record(f"cold crops 150px, {args.workers} worker(s)", lambda p=pre: p.faces(paths))
            for _ in range(3):
                record("warm crops 150px (cache hits)", lambda p=pre: p.faces(paths))
        finally:
            shutil.rmtree(cache, ignore_errors=True)

    stages = stage_timings(paths[:40], 640)
    import dlib

    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores visible, "
          f"{len(os.sched_getaffinity(0))} usable; load average before {load_before[0]:.1f}, "
          f"after {os.getloadavg()[0]:.1f} (other users' jobs share these cores)")  # fmt: skip
    print(f"versions: python {platform.python_version()}, dlib {dlib.__version__}, opencv {cv2.__version__}, "
          f"numpy {np.__version__}; cv2 threads 1 per process")  # fmt: skip
    print(f"{count} London photos (1350x1350 JPEG), medians of {args.repeats} repeats\n")
    print(f"{'pass':45s} {'wall s':>8s} {'images/s':>9s} {'CPU ms/img':>11s}")
    for name, values in rows.items():
        wall = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values)
        print(f"{name:45s} {wall:8.2f} {count / wall:9.1f} {1000 * cpu / count:11.1f}")
    baseline = rows.get("baseline: full-res dlib loop, 1 process")
    cold = rows.get(f"cold landmarks, {args.workers} worker(s)")
    if baseline and cold:
        ratio = statistics.median(b[0] / c[0] for b, c in zip(baseline, cold, strict=True))
        print(
            f"\ncold pass ({args.workers} workers) vs bare full-res loop: {ratio:.1f}x faster (median of paired runs)"
        )
    print("\ncold-pass steps, median ms per image (1 process): "
          + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()))  # fmt: skip


if __name__ == "__main__":
    main()
