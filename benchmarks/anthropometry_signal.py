"""How much of each simulated condition's true measure the clinical anthropometry indices (and other sources) carry.

    python benchmarks/anthropometry_signal.py <fused run dir with a face_anthropometry source> [--landmarker NAME]
        [--skin-colour] [--source NAME]

Reads the run's dumped features (``features/{train,val,test}.npz``: every image of its tree, each once), keeps the
``face_anthropometry`` columns (metrics.json ``sources``; each such source apart, e.g. dlib's and the face mesh's, and
all of them together), and for every ``measure_<descriptor>`` of the tree's
``truth.csv`` (the exact measure in the written photo, SD units) prints the 5-fold cross-validated R² of a ridge
regression from the indices (alpha by inner CV; one image per person, so the folds are person-grouped) and the index
with the largest |Pearson r|. A property of detection + alignment + indices on that tree; no classifier is
scored and no split's test labels are used to choose anything. ``--landmarker dlib_averaged`` (or ``mesh``; repeatable)
measures the indices on that landmarker's points as well (the run's own preprocessing and crop, every image of the run;
each photo's points cached), an extra source beside the run's own. A ``skin_colour`` source of the run is read like the
indices; ``--skin-colour`` measures it here (:mod:`facediag.models.skin_colour`, the run's preprocessing, the default
crop) when the run has none; ``--source NAME`` (repeatable) adds another of the run's sources by its metrics.json name
(e.g. ``dlib_resnet``) for comparison.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_header, print_table  # noqa: E402

READ_KINDS = ("face_anthropometry", "skin_colour")  # the run's sources read by default


def anthropometry_columns(run_dir: Path, names: Sequence[str] = ()) -> dict[str, slice]:
    """The run's ``face_anthropometry`` and ``skin_colour`` columns in its concatenated features, per source
    (``face_anthropometry`` of the preprocessing's landmarks, ``face_anthropometry@mesh`` of the face mesh's), and
    those of the sources ``names``."""
    from facediag.models.features import source_name

    sources = json.loads((run_dir / "metrics.json").read_text()).get("sources") or []
    found = {source_name(s): slice(*s["columns"]) for s in sources
             if s.get("features") in READ_KINDS or source_name(s) in names}
    if not any(s.get("features") == "face_anthropometry" for s in sources):
        raise SystemExit(f"{run_dir}: no face_anthropometry source in metrics.json")
    unknown = sorted(set(names) - set(found))
    if unknown:
        raise SystemExit(f"{run_dir}: no source {unknown} in metrics.json; it has {[source_name(s) for s in sources]}")
    return found


def column_names(run_dir: Path, name: str, width: int) -> list[str]:
    """The names of a source's columns: the indices, the skin-colour statistics, else ``<source>[i]``."""
    from facediag.models.features import source_name
    from facediag.models.geometry import ANTHROPOMETRY
    from facediag.models.skin_colour import KIND, SKIN_COLOUR

    kinds = {source_name(s): s.get("features") for s in json.loads((run_dir / "metrics.json").read_text())["sources"]}
    kind = kinds.get(name) or name.split("@")[0].split(" ")[0]
    named = {"face_anthropometry": ANTHROPOMETRY, KIND: SKIN_COLOUR}.get(str(kind))
    return list(named) if named is not None and len(named) == width else [f"{name}[{i}]" for i in range(width)]


def measured_indices(run_dir: Path, paths: list[Path], landmarker: str | None, kind: str = "face_anthropometry"
                     ) -> np.ndarray:
    """The ``kind`` features of ``paths`` (``face_anthropometry`` indices on ``landmarker``'s points, or the
    ``skin_colour`` of the crops), through the run's preprocessing and the crop of its ``face_anthropometry`` source."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from facediag.core.crop import CropSpec
    from facediag.strategies.fused import measured_features, reads_crop

    sources = json.loads((run_dir / "metrics.json").read_text())["sources"]
    crop = CropSpec.of(next(s["crop"] for s in sources if s.get("features") == "face_anthropometry"))
    preprocessor = instantiate(OmegaConf.load(run_dir / "run_config.yaml").preprocess, progress=False)
    faces = preprocessor.faces(pd.DataFrame({"path": [str(p) for p in paths]}), crop,
                               crops=reads_crop({"features": kind}), landmarks=True, landmarker=landmarker)
    if len(faces.rows) != len(paths):
        raise SystemExit(f"{run_dir}: {len(paths) - len(faces.rows)} images without a face; the features need all")
    return measured_features(kind, faces)


def main() -> None:
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--landmarker", action="append", default=[],
                        help="also the indices on this landmarker's points (facediag.preprocess.pipeline.LANDMARKERS)")
    parser.add_argument("--skin-colour", action="store_true",
                        help="also the skin colour of the crops (facediag.models.skin_colour), measured here")
    parser.add_argument("--source", action="append", default=[],
                        help="also this source of the run (its metrics.json name, e.g. dlib_resnet)")
    args = parser.parse_args()
    run_dir = args.run
    parts = [np.load(run_dir / "features" / f"{role}.npz", allow_pickle=True) for role in ("train", "val", "test")]
    everything = np.vstack([p["features"] for p in parts])
    paths = [Path(p) for p in np.concatenate([p["paths"] for p in parts]).astype(str)]
    tree = paths[0].parent.parent
    truth = pd.read_csv(tree / "truth.csv").set_index("path").loc[[f"{p.parent.name}/{p.name}" for p in paths]]
    print_header("Anthropometry indices against the true measures", run=str(run_dir), tree=tree.name,
                 images=len(paths))
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 3, 12)))
    sources = anthropometry_columns(run_dir, args.source)
    extras = [(f"face_anthropometry@{name}", name, "face_anthropometry") for name in args.landmarker]
    extras += [("skin_colour", None, "skin_colour")] if args.skin_colour else []
    for label, landmarker, kind in extras:
        extra = measured_indices(run_dir, paths, landmarker, kind)
        start = everything.shape[1]
        sources[f"{label} (measured here)"] = slice(start, start + extra.shape[1])
        everything = np.hstack([everything, extra])
    if len(sources) > 1:  # every source's indices together too
        sources["all together"] = np.r_[tuple(np.arange(c.start, c.stop) for c in sources.values())]
    rows = []
    for column in [c for c in truth.columns if c.startswith("measure_")]:
        y = truth[column].to_numpy(dtype=float)
        for name, columns in sources.items():
            features = everything[:, columns]
            predicted = cross_val_predict(model, features, y, cv=KFold(5, shuffle=True, random_state=0))
            r2 = 1 - ((y - predicted) ** 2).sum() / ((y - y.mean()) ** 2).sum()
            r = np.array([abs(np.corrcoef(features[:, i], y)[0, 1]) for i in range(features.shape[1])])
            named = (column_names(run_dir, name, features.shape[1]) if isinstance(columns, slice)
                     else [n for s, c in sources.items() if isinstance(c, slice)
                           for n in column_names(run_dir, s, c.stop - c.start)])
            rows.append({"true measure": column.removeprefix("measure_"), "indices of": name,
                         "indices": features.shape[1], "CV R² (ridge)": f"{r2:.2f}",
                         "best single index": named[int(np.nanargmax(r))], "|r|": f"{np.nanmax(r):.2f}"})
    print_table(rows)


if __name__ == "__main__":
    main()
