"""Photos without people, made on the fly from scikit-image's bundled images (public domain / permissive licences;
none is committed) plus drawn and synthetic ones: what a face model must flag rather than score. ``camera``
(a cameraman) and ``astronaut`` show people and are left out.

``python -m tests.natural_photos <folder>`` writes them as PNG files (the measurement in docs/guides/flags.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

SKIMAGE = ("coffee", "chelsea", "rocket", "hubble_deep_field", "cat", "moon", "page", "immunohistochemistry", "horse",
           "retina", "brick", "grass", "gravel", "coins", "clock", "text", "colorwheel", "logo",
           "shepp_logan_phantom")  # fmt: skip


def _uint8_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = image.astype(np.float64)
        image = (255 * (image - image.min()) / (np.ptp(image) or 1.0)).astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


def cartoon_face(size: int = 400) -> np.ndarray:
    """A drawn smiley: a face to a person's eye, not a photo of one."""
    image = np.full((size, size, 3), 235, np.uint8)
    c = size // 2
    cv2.circle(image, (c, c), int(size * 0.38), (250, 210, 60), -1)
    for dx in (-1, 1):
        cv2.circle(image, (c + dx * size // 7, c - size // 10), size // 22, (30, 30, 30), -1)
    cv2.ellipse(image, (c, c + size // 14), (size // 6, size // 9), 0, 10, 170, (30, 30, 30), size // 60 + 1)
    return image


def natural_photos() -> dict[str, np.ndarray]:
    """name -> uint8 RGB: scikit-image's photos without people, each whole and as four quadrants upscaled 2x,
    a drawn smiley, noise and flat grey."""
    from skimage import data

    photos: dict[str, np.ndarray] = {}
    for name in SKIMAGE:
        image = _uint8_rgb(getattr(data, name)())
        photos[name] = image
        h, w = image.shape[:2]
        for i, (y, x) in enumerate(((0, 0), (0, w // 2), (h // 2, 0), (h // 2, w // 2))):
            quarter = image[y : y + h // 2, x : x + w // 2]
            photos[f"{name}_q{i}"] = cv2.resize(quarter, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    rng = np.random.default_rng(0)
    photos["cartoon"] = cartoon_face()
    photos["noise"] = rng.integers(0, 256, (400, 400, 3), dtype=np.uint8)
    photos["smooth_noise"] = cv2.GaussianBlur(photos["noise"], (0, 0), 6)
    photos["flat"] = np.full((300, 300, 3), 128, np.uint8)
    return photos


def write_natural_photos(folder: Path) -> list[Path]:
    """Write ``natural_photos()`` as ``<folder>/<name>.png``; returns the files."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, image in natural_photos().items():
        Image.fromarray(image).save(folder / f"{name}.png")
        written.append(folder / f"{name}.png")
    return written


if __name__ == "__main__":
    print(f"{len(write_natural_photos(Path(sys.argv[1])))} photos in {sys.argv[1]}")
