"""On-disk cache of landmark results and aligned crops, keyed by image sha256 and config hash.

Layout under ``root``::

    preprocess/<config_hash>/landmarks/<sha[:2]>/<sha>.json
    preprocess/<config_hash>/crops/<crop_key>/<sha[:2]>/<sha>.npy

Files are written atomically (temporary file + rename), so parallel runs and interrupted runs
never leave a half-written entry; a corrupt entry reads as a miss.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from facediag.core import files
from facediag.core.files import atomic_write

CACHE_FORMAT = 1


def config_hash(config: dict[str, Any]) -> str:
    """Cache folder name of a preprocessing configuration (with the cache format)."""
    return files.config_hash({"format": CACHE_FORMAT, **config})


class PreprocessCache:
    """Landmark results (JSON) and crops (.npy) for one preprocessing config; ``root=None`` caches nothing."""

    def __init__(self, root: str | os.PathLike | None, config_key: str):
        self.root = Path(root) / "preprocess" / config_key if root is not None else None

    @property
    def enabled(self) -> bool:
        return self.root is not None

    def _result_path(self, sha256: str) -> Path:
        assert self.root is not None
        return self.root / "landmarks" / sha256[:2] / f"{sha256}.json"

    def _crop_path(self, sha256: str, crop_key: str) -> Path:
        assert self.root is not None
        return self.root / "crops" / crop_key / sha256[:2] / f"{sha256}.npy"

    def get_result(self, sha256: str) -> dict[str, Any] | None:
        if self.root is None:
            return None
        try:
            return json.loads(self._result_path(sha256).read_text())
        except (OSError, ValueError):
            return None

    def put_result(self, sha256: str, record: dict[str, Any]) -> None:
        if self.root is not None:
            payload = json.dumps(record).encode()
            atomic_write(self._result_path(sha256), lambda handle: handle.write(payload))

    def get_crop(self, sha256: str, crop_key: str) -> np.ndarray | None:
        if self.root is None:
            return None
        try:
            return np.load(self._crop_path(sha256, crop_key), allow_pickle=False)
        except (OSError, ValueError):
            return None

    def put_crop(self, sha256: str, crop_key: str, crop: np.ndarray) -> None:
        if self.root is not None:
            atomic_write(self._crop_path(sha256, crop_key), lambda handle: np.save(handle, crop))
