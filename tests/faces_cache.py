"""A cache of a test's own that starts with the session's detected faces but no features: the features a run
computes (and where it caches them) are that run's alone, and no London face is detected again."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path


def faces_only_cache(shared_cache: Path, cache: Path) -> Path:
    """``cache`` holding the landmarks and crops of ``shared_cache`` (``preprocess/``, hard links: the cache
    replaces files, it never writes into one) and no ``features/``. Entries another worker is writing (hidden
    temporary files) are left out: the run computes those itself."""
    for source in sorted((shared_cache / "preprocess").rglob("*")):
        if not source.is_file() or source.name.startswith("."):
            continue
        target = cache / source.relative_to(shared_cache)
        target.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):  # renamed over or removed meanwhile
            try:
                os.link(source, target)
            except OSError:  # another file system: a copy
                shutil.copy2(source, target)
    assert not (cache / "features").exists()
    return cache
