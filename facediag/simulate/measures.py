"""Each descriptor's measure on the photo as written: the truth an ideal observer reads (``measure_<name>`` of
``truth.csv``).

Geometric descriptors are measured on the photo's final (warped, posed) landmarks, the appearance one (skin
yellowness) on the encoded JPEG; every value is standardised by the source table (``conditions.csv``: mean, SD
over the source faces) and signed so that the condition raises it: a healthy face reads about N(0, 1) on each,
a condition at ``strength`` SD about ``strength`` on its own descriptors. ``python -m facediag.simulate.measures
<tree> ...`` adds the columns to a tree written before they existed (it replays the tree's seeded draws; no photo
is rewritten).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd

from facediag.simulate.anatomy import named_points
from facediag.simulate.conditions import CONDITIONS, Condition, descriptors_of

PREFIX = "measure_"


def standardised_measures(
    conditions: Sequence[Condition], table: pd.DataFrame, points: np.ndarray, photo: str | os.PathLike
) -> dict[str, float]:
    """``measure_<descriptor>`` -> sign x (measure - mean) / SD for every descriptor of ``conditions``; the photo
    is read only when one of them is an appearance descriptor."""
    from facediag.core.imageio import read_rgb
    from facediag.simulate.appearance import skin_yellowness

    stats = table.set_index("condition")
    named = named_points(points)
    descriptors = descriptors_of(conditions)
    image = read_rgb(photo) if any(d.kind == "appearance" for d in descriptors) else None
    out = {}
    for d in descriptors:
        value = skin_yellowness(image, points) if d.kind == "appearance" else d.measure(named)
        out[PREFIX + d.name] = round(d.sign * (value - stats.loc[d.name, "mean"]) / stats.loc[d.name, "sd"], 5)
    return out


def add_measures(tree: str | os.PathLike, london_root: str | os.PathLike) -> pd.DataFrame:
    """Add ``measure_<descriptor>`` columns to the ``truth.csv`` of a London tree written without them, by replaying
    its seeded draws (each person's recorded jitter must come out again: a mismatch is an error, nothing written)."""
    from PIL import Image

    from facediag.simulate.source import london_faces
    from facediag.simulate.tree import HEALTHY, Settings, plan

    tree = Path(tree)
    made = json.loads((tree / "simulate.json").read_text())
    if made.get("source") != "london":
        raise ValueError(f"{tree}: only London trees can be replayed (source {made.get('source')!r})")
    settings = Settings(**{f.name: made[f.name] for f in fields(Settings) if f.name in made})
    conditions = settings.chosen()
    table = pd.read_csv(tree / "conditions.csv")
    sd = table.set_index("condition")["sd"]
    truth = pd.read_csv(tree / "truth.csv", dtype={"subject": str})
    faces = london_faces(london_root)
    person_seeds = np.random.SeedSequence(int(settings.seed)).spawn(1 + len(faces))[1:]
    index = {face.subject: i for i, face in enumerate(faces)}
    rows = []
    for record in truth.to_dict("records"):
        i = index[record["subject"]]
        face = faces[i]
        with Image.open(face.path) as photo:
            size = photo.size
        label = record["class"]
        drawn = plan(face, label, conditions, sd, settings, np.random.default_rng(person_seeds[i]), size)
        own = {d.name for d in CONDITIONS[label].descriptors} if label != HEALTHY else set()
        for d in descriptors_of(conditions):
            recorded = record[f"jitter_{d.name}"]
            again = drawn.amounts[d.name] - (settings.strength if d.name in own else 0.0)
            if abs(recorded - again) > 1e-3:
                raise ValueError(f"{tree}: the replay of {record['path']} drew jitter {again:.4f} for {d.name}, the "
                                 f"tree recorded {recorded:.4f}: it was made by other code")  # fmt: skip
        rows.append(standardised_measures(conditions, table, drawn.target, tree / record["path"]))
    measures = pd.DataFrame(rows, index=truth.index)
    truth = pd.concat([truth.drop(columns=[c for c in measures.columns if c in truth.columns]), measures], axis=1)
    truth.to_csv(tree / "truth.csv", index=False)
    return truth


if __name__ == "__main__":
    from facediag.core.config import data_dir

    for folder in sys.argv[1:]:
        done = add_measures(folder, data_dir() / "london-faces")
        names = pd.read_csv(Path(folder) / "conditions.csv")["condition"]
        print(f"{folder}: {len(done)} rows, columns " + ", ".join(PREFIX + n for n in names))
