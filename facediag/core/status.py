"""The one status vocabulary of every table that lists input files: manifest.csv, preprocess_report.csv,
the predictions of ``facediag.predict`` and of external validation, ``facediag.explain``'s explain.csv. Each row
has ``status`` (a word below) and ``reason`` (why, in words; empty when ``ok``)."""

from __future__ import annotations

import os
from pathlib import Path

from facediag.core.imageio import is_image_file

OK = "ok"  # a usable photo (with a face, once preprocessing has run)
CENTER_CROP = "center_crop"  # no face found; the central square stands in (preprocess.no_face=center_crop), flagged
NO_FACE = "no_face"  # no face found: left out
ERROR = "error"  # the file cannot be read: a broken link, an empty, truncated or undecodable file
NOT_IMAGE = "not_image"  # not an image file, by its extension
EXCLUDED = "excluded"  # left out on purpose: a hidden file, a folder or class not in the task, no label for it
# the tables of applying a run (facediag.apply): the photo was scored but a check failed (``flags`` says which,
# ``reason`` in words: e.g. outside what the model saw); and a saliency map with nothing to show
FLAGGED = "flagged"
BLANK_SALIENCY = "blank_saliency"
STATUSES = (OK, CENTER_CROP, NO_FACE, ERROR, NOT_IMAGE, EXCLUDED, FLAGGED, BLANK_SALIENCY)
USED = (OK, CENTER_CROP)  # the statuses of files a model sees


def listing_status(path: str | os.PathLike) -> tuple[str, str] | None:
    """``(status, reason)`` of a file found in a folder, known before it is opened (a broken link, a hidden
    file, a name without an image extension); None when the file is to be read."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        return ERROR, f"broken link to {os.readlink(path)}"
    if path.name.startswith("."):
        return EXCLUDED, "hidden file"
    if not is_image_file(path):
        return NOT_IMAGE, "not an image file (by its extension)"
    return None
