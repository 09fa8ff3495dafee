"""Cache files: atomic writes and the stable hash that names a configuration's cache folder."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any], suffix: str = ".tmp") -> Path:
    """Write ``path`` through ``write(handle)`` into a temporary file beside it, then rename it into place.

    Readers never see a half-written file; when ``write`` raises, nothing is left behind and the error propagates.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return path


def canonical_json(config: Mapping[str, Any]) -> str:
    """``config`` as JSON with sorted keys (non-JSON values as their ``str``): equal configs, equal text."""
    return json.dumps(dict(config), sort_keys=True, default=str)


def config_hash(config: Mapping[str, Any]) -> str:
    """16 hex digits of the sha256 of ``canonical_json(config)``: the name of a configuration's cache folder."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:16]
