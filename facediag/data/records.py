"""One record type for every dataset, and the manifest that lists every image found."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from facediag.core.download import sha256_file
from facediag.core.files import atomic_write
from facediag.core.imageio import DEFAULT_MAX_PIXELS, BadImageError, check_decodes
from facediag.core.status import ERROR, OK, listing_status

MANIFEST_COLUMNS = ["path", "label", "subject", "sha256", "width", "height", "status", "reason", "subject_source"]
FACTS_VERSION = "2"  # manifest facts cached by an older facediag (status "error: <reason>") are recomputed
# where a subject id comes from: a table (subjects CSV, London's info file), identity grouping, or the file itself
SUBJECT_SOURCES = ("csv", "identity", "file")


@dataclass(frozen=True)
class Record:
    """An image with its class label, the person it shows and optional metadata.

    ``label`` is None when the image exists but has no label for the chosen task (kept in the
    manifest with ``status`` "excluded" and the ``reason``, never dropped silently; statuses:
    :mod:`facediag.core.status`). ``subject_source``: "csv" (a table named the person) or "file"
    (nobody did: the file is its own subject until identity grouping).
    """

    path: str
    label: str | None
    subject: str
    meta: dict[str, object] = field(default_factory=dict)
    status: str = OK
    subject_source: str = "csv"
    reason: str = ""


def normalize_name(name: str) -> str:
    """Fold case, spaces, hyphens and underscores: 'Beta-Thalassemia' == 'beta thalassemia'."""
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _file_facts(path: str, max_pixels: int) -> dict[str, object]:
    """sha256, upright size, status and reason of one file (the expensive part of a manifest row)."""
    unread = {"sha256": None, "width": None, "height": None}
    listed = listing_status(path)
    if listed is not None and listed[0] == ERROR:
        return {**unread, "status": listed[0], "reason": listed[1]}
    try:
        digest = sha256_file(path)
    except OSError as err:
        return {**unread, "status": ERROR, "reason": f"cannot read ({err.strerror})"}
    if listed is not None:
        return {**unread, "sha256": digest, "status": listed[0], "reason": listed[1]}
    try:
        width, height = check_decodes(path, max_pixels=max_pixels)
        return {"sha256": digest, "width": width, "height": height, "status": OK, "reason": ""}
    except BadImageError as err:
        return {**unread, "sha256": digest, "status": ERROR, "reason": err.reason}


class FactCache:
    """Manifest facts per file, keyed by (path, size, mtime): a warm run neither hashes nor decodes."""

    def __init__(self, cache_dir: str | os.PathLike | None, max_pixels: int):
        self.file = Path(cache_dir) / "manifest_facts.json" if cache_dir else None
        self.max_pixels = max_pixels
        self.facts: dict[str, dict[str, object]] = {}
        if self.file is not None and self.file.is_file():
            try:
                self.facts = json.loads(self.file.read_text())
            except (OSError, ValueError):
                self.facts = {}
        self.dirty = False

    def get(self, path: str) -> dict[str, object]:
        try:
            stat = os.stat(path)
            key = f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}|{self.max_pixels}|{FACTS_VERSION}"
        except OSError:
            return _file_facts(path, self.max_pixels)
        if key not in self.facts:
            self.facts[key] = _file_facts(path, self.max_pixels)
            self.dirty = True
        return self.facts[key]

    def save(self) -> None:
        if self.file is not None and self.dirty:
            atomic_write(self.file, lambda handle: handle.write(json.dumps(self.facts).encode()))


def _inspect(record: Record, facts: FactCache) -> dict[str, object]:
    row: dict[str, object] = {
        "path": record.path, "label": record.label, "subject": record.subject, "subject_source": record.subject_source
    }  # fmt: skip
    row.update(facts.get(record.path))
    if record.status != OK and row["status"] == OK:
        row["status"], row["reason"] = record.status, record.reason
    return row | dict(record.meta)


def build_manifest(
    records: Iterable[Record],
    max_pixels: int = DEFAULT_MAX_PIXELS,
    n_threads: int | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Hash and decode every record once: `path,label,subject,sha256,width,height,status,reason` + metadata.

    Every record is a row: unreadable files with ``status`` "error", hidden files "excluded", other
    extensions "not_image", each with its ``reason`` (:mod:`facediag.core.status`). With ``cache_dir`` the
    facts of unchanged files (same path, size and mtime) are reused.
    """
    records = list(records)
    facts = FactCache(cache_dir, max_pixels)
    workers = n_threads or min(8, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = list(pool.map(lambda r: _inspect(r, facts), records))
    facts.save()
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
    """Every file below ``root`` (sorted), broken links and hidden files included (the manifest gives each
    its status); suffix filtering is the caller's choice."""
    root = Path(root)
    found = root.rglob("*")
    files = sorted(p for p in found if not p.is_dir() and (p.is_file() or p.is_symlink()))
    if suffixes is not None:
        wanted = {s.lower() for s in suffixes}
        files = [p for p in files if p.suffix.lower() in wanted]
    return files
