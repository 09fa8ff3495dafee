"""How much of each simulated condition's true measure the clinical anthropometry indices carry.

    python benchmarks/anthropometry_signal.py <fused run dir with a face_anthropometry source> [--landmarker NAME]

Reads the run's dumped features (``features/{train,val,test}.npz``: every image of its tree, each once), keeps the
``face_anthropometry`` columns (metrics.json ``sources``; each such source apart, e.g. dlib's and the face mesh's, and
all of them together), and for every ``measure_<descriptor>`` of the tree's
``truth.csv`` (the exact measure in the written photo, SD units) prints the 5-fold cross-validated R² of a ridge
regression from the indices (alpha by inner CV; one image per person, so the folds are person-grouped) and the index
with the largest |Pearson r|. A property of detection + alignment + indices on that tree; no classifier is
scored and no split's test labels are used to choose anything. ``--landmarker dlib_averaged`` (or ``mesh``; repeatable)
measures the indices on that landmarker's points as well (the run's own preprocessing and crop, every image of the run;
each photo's points cached), an extra source beside the run's own.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_header, print_table  # noqa: E402


def anthropometry_columns(run_dir: Path) -> dict[str, slice]:
    """The run's ``face_anthropometry`` columns in its concatenated features, per source (``face_anthropometry`` of
    the preprocessing's landmarks, ``face_anthropometry@mesh`` of the face mesh's)."""
    sources = json.loads((run_dir / "metrics.json").read_text()).get("sources") or []
    found = {str(s.get("name") or s["features"]): slice(*s["columns"]) for s in sources
             if s.get("features") == "face_anthropometry"}
    if not found:
        raise SystemExit(f"{run_dir}: no face_anthropometry source in metrics.json")
    return found


def measured_indices(run_dir: Path, paths: list[Path], landmarker: str) -> np.ndarray:
    """(N, 20) ``face_anthropometry`` indices of ``paths`` on ``landmarker``'s points, through the run's preprocessing
    and the crop of its ``face_anthropometry`` source."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from facediag.core.crop import CropSpec
    from facediag.models.geometry import landmark_features

    sources = json.loads((run_dir / "metrics.json").read_text())["sources"]
    crop = CropSpec.of(next(s["crop"] for s in sources if s.get("features") == "face_anthropometry"))
    preprocessor = instantiate(OmegaConf.load(run_dir / "run_config.yaml").preprocess, progress=False)
    faces = preprocessor.faces(pd.DataFrame({"path": [str(p) for p in paths]}), crop, crops=False, landmarks=True,
                               landmarker=landmarker)
    if len(faces.rows) != len(paths):
        raise SystemExit(f"{run_dir}: {len(paths) - len(faces.rows)} images without a face; the indices need all")
    return landmark_features("face_anthropometry", faces.landmarks, crop.template)


def main() -> None:
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from facediag.models.geometry import ANTHROPOMETRY

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--landmarker", action="append", default=[],
                        help="also the indices on this landmarker's points (facediag.preprocess.pipeline.LANDMARKERS)")
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
    sources = anthropometry_columns(run_dir)
    for name in args.landmarker:
        extra = measured_indices(run_dir, paths, name)
        start = everything.shape[1]
        sources[f"face_anthropometry@{name} (measured here)"] = slice(start, start + extra.shape[1])
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
            rows.append({"true measure": column.removeprefix("measure_"), "indices of": name,
                         "indices": features.shape[1], "CV R² (ridge)": f"{r2:.2f}",
                         "best single index": ANTHROPOMETRY[int(np.argmax(r)) % len(ANTHROPOMETRY)],
                         "|r|": f"{r.max():.2f}"})
    print_table(rows)


if __name__ == "__main__":
    main()
