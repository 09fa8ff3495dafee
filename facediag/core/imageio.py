"""Robust image reading: EXIF orientation, any mode to RGB, size and pixel limits (a decompression bomb is refused
with a message naming the file)."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"})
DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_MAX_BYTES = 50 * 1024 * 1024  # an upload (read_rgb_bytes); a 50-megapixel JPEG is ~25 MB


class BadImageError(ValueError):
    """An image file that cannot be used; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def is_image_file(path: str | os.PathLike) -> bool:
    """True for file names with a known image suffix (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def _open_checked(path: Path, max_pixels: int, data: bytes | None = None) -> Image.Image:
    """The opened image (header only) of ``path``, or of ``data`` named ``path``, within ``max_pixels``."""
    if data is None and not path.is_file():
        raise BadImageError(path, "file not found")
    if (len(data) if data is not None else path.stat().st_size) == 0:
        raise BadImageError(path, "empty file (0 bytes)")
    image = Image.open(BytesIO(data) if data is not None else path)
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise BadImageError(path, f"{width}x{height} = {width * height} pixels exceeds the limit of {max_pixels} "
                                  "(refused before decoding: a possible decompression bomb)")
    return image


def check_decodes(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """Decode the whole file (JPEGs at reduced DCT scale: every byte is still parsed, ~10x faster).

    Returns the upright (width, height); raises BadImageError naming the file like ``read_rgb``.
    """
    path = Path(path)
    with _decode_errors(path):
        with _open_checked(path, max_pixels) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
            if image.format == "JPEG":
                image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
            image.load()
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


@contextlib.contextmanager
def _decode_errors(path: Path) -> Iterator[None]:
    """Turn PIL's many failure types into BadImageError(path, reason)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except BadImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise BadImageError(path, f"refused as a possible decompression bomb ({err})") from err
    except UnidentifiedImageError as err:
        raise BadImageError(path, "not a recognised image format") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise BadImageError(path, f"cannot be decoded ({err})") from err


def read_rgb(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an image as upright uint8 RGB (H, W, 3); raise BadImageError naming the file."""
    return _decode_rgb(Path(path), max_pixels)


def read_rgb_bytes(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS,
                   max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray:
    """Decode an encoded image held in memory (an upload) like ``read_rgb``; errors name it ``name``."""
    if len(data) > max_bytes:
        raise BadImageError(name, f"{len(data)} bytes exceeds the upload limit of {max_bytes} bytes")
    return _decode_rgb(Path(name), max_pixels, bytes(data))


def _decode_rgb(path: Path, max_pixels: int, data: bytes | None = None) -> np.ndarray:
    with _decode_errors(path), _open_checked(path, max_pixels, data) as image:
        image.load()
        upright = ImageOps.exif_transpose(image) if image.getexif().get(0x0112, 1) != 1 else image
        rgb = upright if upright.mode == "RGB" else _to_rgb(upright)
        return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
