"""Feature-extraction speed (images/s) of ``extract_features`` next to a bare ``torch.no_grad()`` loop.

For dlib_resnet (dlib_faces), efficientnet_lite0 (imagenet) and resnet50 (random init: speed does not
depend on the weights), on aligned London crops made with ``dlib.get_face_chip`` at each backbone's
crop size and padding. The bare loop runs ``model.features`` on the same crops already normalised
(no preprocessing, no copies); ``extract_features`` starts from the uint8 crops. Target overhead
<= 1.3x: the median of per-repeat time ratios, the two loops alternating so that both see the same
machine load. dlib's own C++ ``compute_face_descriptor`` is timed for reference. Medians of
``--repeats``.

    FACEDIAG_DATA_DIR=/work/shared/data python benchmarks/features.py --threads 2
"""

from __future__ import annotations

import argparse
import importlib.resources
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from common import print_header

from facediag.core.config import data_dir
from facediag.core.imageio import read_rgb
from facediag.models import create, extract_features

REPO = Path(__file__).resolve().parents[1]
CASES = (("dlib_resnet", "dlib_faces"), ("efficientnet_lite0", "imagenet"), ("resnet50", "none"))


def london_chips(count: int, sizes: set[tuple[int, float]]) -> dict[tuple[int, float], np.ndarray]:
    """``count`` aligned crops per (size, padding), from the first London faces dlib finds."""
    import dlib

    london = data_dir() / "london-faces" / "neutral"
    if not london.is_dir():
        raise SystemExit(f"London faces not found at {london} (set FACEDIAG_DATA_DIR)")
    models = importlib.resources.files("face_recognition_models") / "models"
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    chips: dict[tuple[int, float], list[np.ndarray]] = {key: [] for key in sizes}
    for path in sorted(london.glob("*.jpg")):
        image = read_rgb(path)
        boxes = detector(np.ascontiguousarray(image[::3, ::3]), 0)
        if len(boxes) != 1:
            continue
        box = boxes[0]
        shape = predictor(image, dlib.rectangle(box.left() * 3, box.top() * 3, box.right() * 3, box.bottom() * 3))
        for size, padding in sizes:
            chips[(size, padding)].append(dlib.get_face_chip(image, shape, size=size, padding=padding))
        if len(next(iter(chips.values()))) == count:
            break
    return {key: np.stack(value) for key, value in chips.items()}


def paired_seconds(first: Callable[[], object], second: Callable[[], object], repeats: int) -> tuple[list, list]:
    """Times of ``first`` and ``second`` run alternately (after one warm-up each), so both see the same load."""
    first(), second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for run, bucket in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            run()
            bucket.append(time.perf_counter() - start)
    return times


def bare_loop(model, inputs: torch.Tensor, batch_size: int) -> None:
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            model.features(inputs[start : start + batch_size])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA only)")
    parser.add_argument("--channels-last", action="store_true", help="NHWC memory (CUDA only)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

    models = {case: create(*case) for case in CASES}
    sizes = {(m.align["size"], float(m.align["padding"])) for m in models.values()}
    crops = london_chips(args.images, sizes)
    device = torch.device(args.device)

    rows = []
    for (backbone, weights), model in models.items():
        model.to(device)
        images = crops[(model.align["size"], float(model.align["padding"]))]
        inputs = model.preprocess(images, device=device)

        def ours(model=model, images=images) -> None:
            extract_features(model, images, batch_size=args.batch_size, device=device, amp=args.amp,
                             channels_last=args.channels_last)

        bare, extracted = paired_seconds(
            lambda model=model, inputs=inputs: bare_loop(model, inputs, args.batch_size), ours, args.repeats
        )
        overhead = statistics.median(e / b for b, e in zip(bare, extracted, strict=True))
        count = len(images)
        rows.append((f"{backbone}/{weights}", count, count / statistics.median(bare),
                     count / statistics.median(extracted), overhead))

    dlib_row = None
    try:
        import dlib

        chips = crops[(models[CASES[0]].align["size"], float(models[CASES[0]].align["padding"]))]
        reference = dlib.face_recognition_model_v1(
            str(importlib.resources.files("face_recognition_models") / "models"
                / "dlib_face_recognition_resnet_model_v1.dat"))
        chip_list = list(chips)
        seconds, _ = paired_seconds(lambda: reference.compute_face_descriptor(chip_list), lambda: None,
                                    args.repeats)
        dlib_row = (len(chips) / statistics.median(seconds), dlib.__version__)
    except ImportError:
        pass

    print_header("benchmarks/features.py: extract_features vs a bare torch loop", device=str(device),
                 batch=args.batch_size, repeats=f"{args.repeats} (medians)", amp=args.amp,
                 channels_last=args.channels_last)
    header = f"{'backbone/weights':32} {'images':>6} {'bare img/s':>11} {'extract img/s':>14} {'overhead':>9}"
    print(header)
    print("-" * len(header))
    for name, count, bare, ours, overhead in rows:
        print(f"{name:32} {count:6d} {bare:11.1f} {ours:14.1f} {overhead:8.2f}x")
    if dlib_row:
        print(f"reference: dlib {dlib_row[1]} C++ compute_face_descriptor: {dlib_row[0]:.1f} img/s "
              f"(its own threading)")


if __name__ == "__main__":
    main()
