"""`<root>/<class>/<image>` trees (users' own data, external validation, the DSF release)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from facediag.core.errors import DataNotFoundError, UserError
from facediag.core.status import EXCLUDED, OK
from facediag.data.records import Record, list_images, normalize_name

UNKNOWN_FOLDERS = ("error", "exclude")


class UnknownClassError(UserError, ValueError):
    """A class folder whose name matches no configured class."""


def resolve_class_names(
    folder_names: Sequence[str], aliases: Mapping[str, Sequence[str]], root: str | os.PathLike, strict: bool = True
) -> dict[str, str]:
    """Map folder names to canonical classes by normalised name or alias; unknown names are an error
    (``strict``) or left out of the mapping."""
    lookup: dict[str, str] = {}
    for canonical, names in aliases.items():
        for name in [canonical, *names]:
            lookup[normalize_name(str(name))] = canonical
    mapping: dict[str, str] = {}
    unknown = []
    for folder in folder_names:
        canonical = lookup.get(normalize_name(folder))
        if canonical is None:
            unknown.append(folder)
        else:
            mapping[folder] = canonical
    if unknown and strict:
        known = ", ".join(f"{c} ({', '.join(map(str, n))})" for c, n in aliases.items())
        raise UnknownClassError(
            f"{root}: class folder(s) {unknown} match no configured class; known classes and aliases: {known}"
        )
    return mapping


def read_subject_csv(csv_path: str | os.PathLike, root: Path) -> pd.DataFrame:
    """Read `path,label,subject,...`; paths may be relative to ``root``. Indexed by absolute path."""
    if not Path(csv_path).is_file():
        raise DataNotFoundError(f"subjects CSV not found: {csv_path} (data.subjects_csv)")
    table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    if "path" not in table.columns:
        raise UserError(f"{csv_path}: needs a 'path' column (found {list(table.columns)})")
    table["path"] = [
        str((root / p).resolve()) if not os.path.isabs(p) else str(Path(p).resolve()) for p in table["path"]
    ]
    return table.set_index("path")


class FolderDataset:
    """Images in one folder per class.

    ``classes``: None (every folder is a class, sorted), a list of the classes to keep, or a mapping
    canonical name → aliases (folder names are matched tolerant of case, spaces and hyphens).
    ``include``: the canonical classes of the task, in order; others are left out of the task
    (listed in the manifest with status 'excluded: ...').
    ``exclude``: folder names (or classes) to leave out. ``unknown``: what a folder matching no class of
    ``classes`` is: "error" (``UnknownClassError``) or "exclude" (left out, its files listed as excluded);
    default "error" for a mapping of aliases, "exclude" for a plain list (the classes the user wants).
    ``subjects_csv``: optional `path,label,subject,...` table for subject ids and metadata; a file it
    does not name is its own subject (``subject_source`` "file") until identity grouping
    (``facediag.data.identity``) finds the same face elsewhere. Every file is a record: broken links,
    hidden and undecodable files are listed in the manifest with their status and reason; ``notes`` says
    which folders were left out and which class folders hold no file (a class without a usable image
    stops training, with the way out; the audit lists it).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        classes: Mapping[str, Sequence[str]] | Sequence[str] | None = None,
        include: Sequence[str] | None = None,
        positive: str | None = None,
        subjects_csv: str | os.PathLike | None = None,
        name: str = "folder",
        exclude: Sequence[str] | None = None,
        unknown: str | None = None,
    ):
        self.root = Path(root).expanduser()
        self.name = name
        self.aliases = self._aliases(classes)
        self.exclude = {normalize_name(str(e)) for e in exclude or ()}
        self.unknown = unknown or ("error" if isinstance(classes, Mapping) else "exclude")
        if self.unknown not in UNKNOWN_FOLDERS:
            raise UserError(f"unknown must be one of {UNKNOWN_FOLDERS}, got {unknown!r}")
        self.notes: list[str] = []
        self.left_out: dict[str, str] = {}  # folder name -> why its files are not in the task
        self.include = list(include) if include else None
        self.positive = positive
        self.subjects_csv = subjects_csv
        self._classes: list[str] | None = None

    @staticmethod
    def _aliases(classes: Mapping[str, Sequence[str]] | Sequence[str] | None) -> dict[str, list[str]] | None:
        if classes is None:
            return None
        if isinstance(classes, Mapping):
            return {str(k): [str(a) for a in (v or [])] for k, v in classes.items()}
        return {str(c): [] for c in classes}

    def _class_dirs(self) -> dict[Path, str | None]:
        """Every class folder and its canonical class; None for a folder left out (``left_out`` says why)."""
        if not self.root.is_dir():
            raise DataNotFoundError(f"{self.name} data folder not found: {self.root} (set data.root=<folder>)")
        folders = sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not folders:
            raise DataNotFoundError(f"{self.root}: no class folders (expected <root>/<class>/<image>)")
        kept = [f for f in folders if normalize_name(f.name) not in self.exclude]
        self.left_out = {f.name: "folder excluded (data.exclude)" for f in folders if f not in kept}
        if self.aliases is None:
            mapping = {f.name: f.name for f in kept}
        else:
            mapping = resolve_class_names([f.name for f in kept], self.aliases, self.root, self.unknown == "error")
            known = ", ".join(self.aliases)
            self.left_out |= {f.name: f"folder matches no class of data.classes ({known})"
                              for f in kept if f.name not in mapping}  # fmt: skip
        if not mapping:
            raise DataNotFoundError(f"{self.root}: every class folder is left out ({self.left_out})")
        return {f: mapping.get(f.name) for f in folders}

    @property
    def classes(self) -> list[str]:
        """The task's classes, in order (class index = position)."""
        if self._classes is None:
            if self.include:
                self._classes = list(self.include)
            elif self.aliases is not None:
                self._classes = list(self.aliases)
            else:
                self._classes = sorted({c for c in self._class_dirs().values() if c is not None})
        return self._classes

    def records(self) -> list[Record]:
        """One record per file below the root's folders (a left-out folder's files as excluded); ``notes``
        lists the folders left out and the class folders without a file."""
        table = read_subject_csv(self.subjects_csv, self.root) if self.subjects_csv else None
        records = []
        self.notes = []
        for folder, canonical in self._class_dirs().items():
            files = list_images(folder)
            if folder.name in self.left_out:
                self.notes.append(f"{folder}: left out, {self.left_out[folder.name]}; {len(files)} file(s)")
            elif not files:
                self.notes.append(f"class folder {folder} (class {canonical}) holds no file")
            for path in files:
                records.append(self._record(path, folder, canonical, table))
        return records

    def _record(self, path: Path, folder: Path, canonical: str | None, table: pd.DataFrame | None) -> Record:
        key = str(path.resolve())
        meta: dict[str, object] = {}
        subject, source = f"{canonical or folder.name}/{path.relative_to(folder).as_posix()}", "file"
        if table is not None and key in table.index:
            row = table.loc[key]
            if row.get("subject"):
                subject, source = row["subject"], "csv"
            meta = {k: v for k, v in row.items() if k not in ("label", "subject")}
        if canonical is None:
            status, reason = EXCLUDED, self.left_out[folder.name]
        elif canonical not in self.classes:
            status, reason = EXCLUDED, f"class {canonical} not in this task"
        else:
            status, reason = OK, ""
        return Record(str(path), canonical if status == OK else None, str(subject), meta, status, source, reason)
