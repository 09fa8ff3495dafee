"""Class-folder trees built from the London faces (symlinks) for the own-data tests: good faces, broken files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from tests.conftest import run_python

run_cli = run_python  # the former name (tests of other branches import it from here)

NEUTRAL, SMILING = "neutral/{}_03.jpg", "smiling/{}_08.jpg"


def london_people(london: Path) -> pd.DataFrame:
    """face_id, face_gender, ... of every London person."""
    return pd.read_csv(london / "london_info.csv", dtype=str)


def photos(london: Path, face_id: str) -> list[Path]:
    """The neutral and the smiling photo of one person."""
    return [london / NEUTRAL.format(face_id), london / SMILING.format(face_id)]


def link(target: Path, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)
    return path


def add_broken_files(folder: Path) -> dict[str, Path]:
    """A truncated JPEG, a text file named .jpg and a broken symlink in ``folder``; returns them by kind."""
    folder.mkdir(parents=True, exist_ok=True)
    good = next(p for p in sorted(folder.iterdir()) if p.suffix == ".jpg")
    truncated = folder / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:3000])
    text = folder / "notes.jpg"
    text.write_text("this is not an image\n")
    broken = folder / "gone.jpg"
    os.symlink(folder / "does-not-exist.jpg", broken)
    return {"truncated": truncated, "text": text, "broken_link": broken}


def resized_copy(source: Path, target: Path, scale: float = 0.5) -> Path:
    """A re-encoded, resized copy of one photo (a near-duplicate)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as image:
        w, h = image.size
        image.convert("RGB").resize((int(w * scale), int(h * scale))).save(target, quality=80)
    return target


def random_class_tree(london: Path, root: Path, classes: list[str], per_class: int, seed: int) -> dict[str, str]:
    """Both photos of ``per_class`` London people in each class folder, people assigned AT RANDOM.

    File names hide who is who (``<class>/img<n>.jpg``); returns file path -> London face id.
    """
    ids = london_people(london)["face_id"].to_numpy()
    chosen = np.random.default_rng(seed).permutation(ids)[: per_class * len(classes)]
    owner: dict[str, str] = {}
    order = np.random.default_rng(seed + 1).permutation(2 * len(chosen))
    for k, face_id in enumerate(chosen):
        folder = root / classes[k // per_class]
        for j, photo in enumerate(photos(london, face_id)):
            path = link(photo, folder / f"img{order[2 * k + j]:04d}.jpg")
            owner[str(path)] = str(face_id)
    return owner
