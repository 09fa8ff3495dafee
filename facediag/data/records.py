"""One record type for every dataset, and the manifest that lists every image found."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from facediag.download import sha256_file
from facediag.imageio import DEFAULT_MAX_PIXELS, BadImageError, read_rgb

MANIFEST_COLUMNS = ["path", "label", "subject", "sha256", "width", "height", "status"]
OK = "ok"


@dataclass(frozen=True)
class Record:
    """An image with its class label, the person it shows and optional metadata.

    ``label`` is None when the image exists but has no label for the chosen task (kept in the
    manifest with the reason in ``status``, never dropped silently).
    """

    path: str
    label: str | None
    subject: str
    meta: dict[str, object] = field(default_factory=dict)
    status: str = OK


def normalize_name(name: str) -> str:
    """Fold case, spaces, hyphens and underscores: 'Beta-Thalassemia' == 'beta thalassemia'."""
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _inspect(record: Record, max_pixels: int) -> dict[str, object]:
    row: dict[str, object] = {"path": record.path, "label": record.label, "subject": record.subject}
    try:
        row["sha256"] = sha256_file(record.path)
    except OSError as err:
        row.update(sha256=None, width=None, height=None, status=f"error: cannot read ({err.strerror})")
        return row | dict(record.meta)
    if record.status != OK:
        row.update(width=None, height=None, status=record.status)
        return row | dict(record.meta)
    try:
        image = read_rgb(record.path, max_pixels=max_pixels)
        row.update(width=image.shape[1], height=image.shape[0], status=OK)
    except BadImageError as err:
        row.update(width=None, height=None, status=f"error: {err.reason}")
    return row | dict(record.meta)


def build_manifest(
    records: Iterable[Record], max_pixels: int = DEFAULT_MAX_PIXELS, n_threads: int | None = None
) -> pd.DataFrame:
    """Hash and decode every record once: `path,label,subject,sha256,width,height,status` + metadata.

    Undecodable files stay in the table with ``status`` = ``error: <reason>``.
    """
    records = list(records)
    workers = n_threads or min(8, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = list(pool.map(lambda r: _inspect(r, max_pixels), records))
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=MANIFEST_COLUMNS)
    extra = [c for c in frame.columns if c not in MANIFEST_COLUMNS]
    frame = frame[MANIFEST_COLUMNS + extra]
    frame["width"] = frame["width"].astype("Int64")
    frame["height"] = frame["height"].astype("Int64")
    return frame


def usable(manifest: pd.DataFrame) -> pd.DataFrame:
    """Rows that decode and carry a label, in manifest order."""
    return manifest[(manifest["status"] == OK) & manifest["label"].notna()].reset_index(drop=True)


def list_images(root: str | os.PathLike, suffixes: Sequence[str] | None = None) -> list[Path]:
    """Every file below ``root`` (sorted), hidden files excluded; suffix filtering is the caller's choice."""
    root = Path(root)
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    if suffixes is not None:
        wanted = {s.lower() for s in suffixes}
        files = [p for p in files if p.suffix.lower() in wanted]
    return files
