"""Source faces: a photo, its landmarks and its person; and each condition's natural spread over them.

``london``: the neutral photos of the London set with their 189 hand-placed landmarks (``landmarks/NNN_03.tem``).
A folder of a user's own control photos: every image below it, landmarked by :mod:`facediag.preprocess` (dlib's
68 points); a file without a usable face is listed with its reason and left out.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facediag.core.errors import DataNotFoundError, UserError
from facediag.simulate.anatomy import named_points, read_tem
from facediag.simulate.conditions import Condition, descriptors_of

#: fewer source faces than this give a poor estimate of a measure's SD (its relative error is ~1/sqrt(2n))
MIN_FACES = 10


@dataclass
class Face:
    """One source photo: its person, file, (N, 2) landmarks (189 or 68) and metadata (sex, age, ethnicity)."""

    subject: str
    path: Path
    points: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


def london_faces(root: str | os.PathLike) -> list[Face]:
    """The neutral photo and hand-placed landmarks of every London person (fetched when missing)."""
    from facediag.data.london import LondonFaces

    root = Path(root)
    faces = []
    for record in LondonFaces(root, task="sex", expressions=["neutral"]).records():
        path = Path(record.path)
        tem = root / "landmarks" / f"{path.stem}.tem"
        if not tem.is_file():
            raise DataNotFoundError(f"{tem}: the London landmarks of {path.name} are missing (see its README)")
        meta = {k: record.meta.get(k) for k in ("sex", "age", "ethnicity")}
        faces.append(Face(record.subject, path, read_tem(tem), meta))
    return faces


def folder_faces(folder: str | os.PathLike, preprocessor: Any) -> tuple[list[Face], pd.DataFrame]:
    """Every image below ``folder`` with a face (dlib 68 landmarks from ``preprocessor``), and a table of the
    files left out (``path``, ``reason``). Subject: the file's path below the folder, without its suffix."""
    from facediag.core.imageio import is_image_file
    from facediag.data.records import list_images

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataNotFoundError(f"source folder not found: {folder} (source=london or source=<folder of photos>)")
    files = list_images(folder)
    photos = [p for p in files if is_image_file(p)]
    skipped = [{"path": str(p), "reason": "not an image file (suffix)"} for p in files if not is_image_file(p)]
    faces = []
    for result in preprocessor.landmarks([str(p) for p in photos]):
        path = Path(result.path)
        if result.status != "ok" or result.landmarks is None:
            skipped.append({"path": str(path), "reason": f"{result.status}: {result.reason}"})
            continue
        subject = path.relative_to(folder).with_suffix("").as_posix().replace("/", "_")
        faces.append(Face(subject, path, np.asarray(result.landmarks, dtype=float)))
    return faces, pd.DataFrame(skipped, columns=["path", "reason"])


#: skin yellowness of source photos already read in this process, by (path, size, mtime, landmarks)
_YELLOWNESS: dict[tuple[str, int, int, bytes], float] = {}
#: the folder below a cache dir that keeps each source photo's skin yellowness (``<sha256>.txt``, the value as
#: Python writes a float, keyed by the photo's bytes, its landmarks and ``YELLOWNESS_VERSION``)
YELLOWNESS_DIR, YELLOWNESS_VERSION = "simulated/skin_yellowness", "1"


def source_yellowness(face: Face, cache_dir: str | os.PathLike | None = None) -> float:
    """:func:`~facediag.simulate.appearance.skin_yellowness` of a source photo, read once per process (the same
    file, unchanged, with the same landmarks): trees built in one process from the same faces share it. With
    ``cache_dir`` also kept on disk below it (``YELLOWNESS_DIR``): the next process reads ~60 ms less per photo."""
    stat = Path(face.path).stat()
    points = np.asarray(face.points, dtype=float)
    key = (str(face.path), stat.st_size, stat.st_mtime_ns, points.tobytes())
    if key not in _YELLOWNESS:
        _YELLOWNESS[key] = _stored_yellowness(face.path, points, cache_dir)
    return _YELLOWNESS[key]


def _stored_yellowness(path: Path, points: np.ndarray, cache_dir: str | os.PathLike | None) -> float:
    """The photo's skin yellowness from ``cache_dir`` when kept there, else computed (and kept there)."""
    import hashlib

    from facediag.core.files import atomic_write
    from facediag.core.imageio import read_rgb
    from facediag.simulate.appearance import skin_yellowness

    if cache_dir is None:
        return skin_yellowness(read_rgb(path), points)
    digest = hashlib.sha256(Path(path).read_bytes() + points.tobytes() + YELLOWNESS_VERSION.encode()).hexdigest()
    stored = Path(cache_dir).expanduser() / YELLOWNESS_DIR / f"{digest}.txt"
    try:
        return float(stored.read_text())
    except (FileNotFoundError, ValueError):  # not kept yet, or cut short
        value = skin_yellowness(read_rgb(path), points)
    atomic_write(stored, lambda handle: handle.write(repr(value).encode()))  # a reader never sees half a number
    return value


def measure_table(faces: Sequence[Face], conditions: Sequence[Condition],
                  cache_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """Per single descriptor the conditions move (a syndrome-like condition: each of its parts): its measure's
    mean and SD (ddof 1) over the source faces, and how many faces. ``cache_dir``: see :func:`source_yellowness`."""
    if len(faces) < MIN_FACES:
        raise UserError(f"{len(faces)} source faces with landmarks: at least {MIN_FACES} are needed to measure "
                        "each condition's natural spread (SD)")  # fmt: skip
    conditions = descriptors_of(conditions)
    values: dict[str, list[float]] = {c.name: [] for c in conditions}
    for face in faces:
        named = named_points(face.points)
        for condition in conditions:
            if condition.kind == "appearance":
                values[condition.name].append(source_yellowness(face, cache_dir))
            else:
                values[condition.name].append(condition.measure(named))
    rows = []
    for condition in conditions:
        column = np.asarray(values[condition.name])
        rows.append({"condition": condition.name, "measure": condition.measure_name, "mean": float(column.mean()),
                     "sd": float(column.std(ddof=1)), "n_faces": len(column),
                     "direction": "raises" if condition.sign > 0 else "lowers",
                     "descriptor": condition.descriptor, "definition": condition.measure_doc})  # fmt: skip
    return pd.DataFrame(rows)
