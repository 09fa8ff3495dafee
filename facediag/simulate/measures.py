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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from facediag.simulate.anatomy import named_points
from facediag.simulate.conditions import CONDITIONS, condition_names, descriptors_of
from facediag.simulate.standardised import PREFIX, standardise, standardised_measures

if TYPE_CHECKING:
    from facediag.simulate.source import Face
    from facediag.simulate.tree import Plan, Settings

def replay(faces: Sequence[Face], settings: Settings, table: pd.DataFrame) -> Iterator[tuple[Face, str, Plan]]:
    """Each person of the tree ``settings`` makes from ``faces`` (``table``: the source's measure SDs): face, class
    and its drawn plan (the same draws as :func:`facediag.simulate.tree.build_tree`; no rendering)."""
    from PIL import Image

    from facediag.simulate.tree import HEALTHY, cast, plan

    conditions = settings.chosen()
    sd = table.set_index("condition")["sd"]
    chosen, labels, seeds = cast(faces, [HEALTHY, *[c.name for c in conditions]], settings)
    for i, label in zip(chosen, labels, strict=True):
        with Image.open(faces[i].path) as photo:
            size = photo.size
        yield faces[i], label, plan(faces[i], label, conditions, sd, settings, np.random.default_rng(seeds[i]), size)


def design_measures(
    faces: Sequence[Face], settings: Settings, table: pd.DataFrame, skin: Mapping[str, float] | None = None
) -> pd.DataFrame:
    """The rows ``path, subject, class, measure_<descriptor>...`` that the tree of ``settings`` would hold, without
    rendering a photo: geometric measures exactly as in the tree (the same draws and landmarks), skin yellowness
    modelled as the source face's (``skin``: subject -> value; needed only when the tree has it) plus its drawn
    amount (exact before the JPEG encoding). The ideal observer's ceiling of a design before any tree is built."""
    rows = []
    for face, label, drawn in replay(faces, settings, table):
        named = named_points(drawn.target)
        raw = {}
        for d in descriptors_of(settings.chosen()):
            if d.kind == "appearance":
                if skin is None:
                    raise ValueError(f"{d.name}: the source faces' skin yellowness (skin=) is needed")
                sd = table.set_index("condition").loc[d.name, "sd"]
                raw[d.name] = skin[face.subject] + d.sign * drawn.amounts[d.name] * sd
            else:
                raw[d.name] = d.measure(named)
        rows.append({"path": f"{label}/{face.subject}.jpg", "subject": face.subject, "class": label,
                     **standardise(raw, table)})  # fmt: skip
    return pd.DataFrame(rows)


def add_measures(tree: str | os.PathLike, london_root: str | os.PathLike) -> pd.DataFrame:
    """Add ``measure_<descriptor>`` columns to the ``truth.csv`` of a London tree written without them, by replaying
    its seeded draws (each person's recorded jitter must come out again: a mismatch is an error, nothing written)."""
    from facediag.simulate.source import london_faces
    from facediag.simulate.tree import HEALTHY, Settings

    tree = Path(tree)
    made = json.loads((tree / "simulate.json").read_text())
    if made.get("source") != "london":
        raise ValueError(f"{tree}: only London trees can be replayed (source {made.get('source')!r})")
    settings = Settings(**{f.name: made[f.name] for f in fields(Settings) if f.name in made})
    conditions = settings.chosen()
    table = pd.read_csv(tree / "conditions.csv")
    truth = pd.read_csv(tree / "truth.csv", dtype={"subject": str}).set_index("path")
    measures = {}
    for face, label, drawn in replay(london_faces(london_root), settings, table):
        path = f"{label}/{face.subject}.jpg"
        own = {d.name for d in CONDITIONS[label].descriptors} if label != HEALTHY else set()
        for d in descriptors_of(conditions):
            recorded = truth.loc[path, f"jitter_{d.name}"]
            again = drawn.amounts[d.name] - (settings.strength if d.name in own else 0.0)
            if abs(recorded - again) > 1e-3:
                raise ValueError(f"{tree}: the replay of {path} drew jitter {again:.4f} for {d.name}, the tree "
                                 f"recorded {recorded:.4f}: it was made by other code")  # fmt: skip
        measures[path] = standardised_measures(conditions, table, drawn.target, tree / path)
    added = pd.DataFrame.from_dict(measures, orient="index").loc[truth.index]
    truth = pd.concat([truth.drop(columns=[c for c in added.columns if c in truth.columns]), added], axis=1)
    truth = truth.rename_axis("path").reset_index()
    truth.to_csv(tree / "truth.csv", index=False)
    return truth


def design_ceiling(conditions: str | Sequence[str], strengths: Sequence[float], london_root: str | os.PathLike,
                   sizes: Sequence[int | None] = (None, 5)) -> pd.DataFrame:
    """The ideal observer's accuracy (5-fold CV, split seed 0, Wilson interval over people) of a London design at
    each strength and training size (None: all training people), from :func:`design_measures` (no tree built)."""
    from facediag.evaluation.power import ideal_cv
    from facediag.simulate.source import london_faces, measure_table, source_yellowness
    from facediag.simulate.tree import Settings

    faces = london_faces(london_root)
    chosen = Settings(conditions=condition_names(conditions)).chosen()
    table = measure_table(faces, chosen)
    skin = ({f.subject: source_yellowness(f) for f in faces}  # read once: measure_table has read them
            if any(d.kind == "appearance" for d in descriptors_of(chosen)) else None)  # fmt: skip
    rows = []
    for strength in strengths:
        truth = design_measures(faces, Settings(strength=float(strength), conditions=tuple(c.name for c in chosen)),
                                table, skin)  # fmt: skip
        for size in sizes:
            rows.append({"strength": strength, "train_subjects_per_class": size or "all",
                         **ideal_cv(truth, per_class=size)})  # fmt: skip
    return pd.DataFrame(rows)


USAGE = """usage: python -m facediag.simulate.measures <tree> [<tree> ...]   add measure_<name> to older London trees
       python -m facediag.simulate.measures ceiling <set or a,b,c> [<SD>,<SD>,...]   a design's ideal observer"""

if __name__ == "__main__":
    from facediag.core.config import data_dir

    args = sys.argv[1:]
    if not args:
        sys.exit(USAGE)
    if args[0] == "ceiling":
        names = args[1].split(",") if len(args) > 1 else ["default"]
        strengths = [float(v) for v in (args[2] if len(args) > 2 else "0,0.5,1,2,3").split(",")]
        table = design_ceiling(names, strengths, data_dir() / "london-faces")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    else:
        for folder in args:
            done = add_measures(folder, data_dir() / "london-faces")
            names = pd.read_csv(Path(folder) / "conditions.csv")["condition"]
            print(f"{folder}: {len(done)} rows, columns " + ", ".join(PREFIX + n for n in names))
