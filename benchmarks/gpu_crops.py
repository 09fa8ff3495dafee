"""London faces as aligned crops in `data=folder` trees, for a machine without the raw photos or dlib's models.

    python benchmarks/gpu_crops.py export <dir>     # here: the EfficientNet-Lite0 crops of every London photo
    python benchmarks/gpu_crops.py trees <dir> <out> # anywhere: <out>/<task>/<class>/<photo>.png + subjects CSVs
    python benchmarks/gpu_crops.py check <out>       # here: person -> role of every split equals data=london's

`export` runs the project's own preprocessing (`preprocess=dlib`: HOG + 68 landmarks + similarity alignment,
cached) with the crop geometry of `backbone=efficientnet_lite0` (vggface2 template, padding 0.2, 224 px) and
writes each crop losslessly (PNG) to `<dir>/crops/<NNN>_<expression>.png`, plus `<dir>/london_meta.csv`
(file, subject = the London person id, sex, age, ethnicity, expression). `trees` links those crops into one
class-folder tree per London task (`sex`, `expression`, `sex_expression`, labels as `facediag.data.london`)
with `<out>/<task>_subjects.csv` naming the person of each file, so that

    python train.py data=folder data.root=<out>/<task> data.subjects_csv=<out>/<task>_subjects.csv \
        data.task=<task> data.identity_grouping=off preprocess=none backbone=efficientnet_lite0 ...

groups people exactly as `data=london` does. `preprocess=none` resizes the central square to 224 px: the
224 px PNG comes back pixel for pixel.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import pandas as pd

TASKS = ("sex", "expression", "sex_expression")


def compose(overrides: list[str]):
    """The train.py config with ``overrides`` (Hydra compose, no run dir)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from facediag.core.config import CONFIG_DIR
    from facediag.training.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=overrides, return_hydra_config=False)


def export(out: Path) -> pd.DataFrame:
    """Crops of every London photo with the EfficientNet-Lite0 geometry, and their metadata table."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from facediag.core.crop import CropSpec
    from facediag.models.registry import backbone_config

    cfg = compose(["data=london", "preprocess=dlib", "backbone=efficientnet_lite0", "weights=imagenet"])
    records = instantiate(cfg.data.source).records()
    align = backbone_config("efficientnet_lite0", OmegaConf.to_container(cfg.backbone, resolve=True))["align"]
    preprocessor = instantiate(cfg.preprocess)
    faces = preprocessor.faces([r.path for r in records], CropSpec.of(align))
    crop_of = dict(zip(faces.paths, faces.crops, strict=True))
    (out / "crops").mkdir(parents=True, exist_ok=True)
    rows = []
    for record, result in zip(records, faces.results, strict=True):
        crop = crop_of.get(result.path)
        name = Path(record.path).stem + ".png"
        if crop is not None:
            cv2.imwrite(str(out / "crops" / name), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
        rows.append({"file": name if crop is not None else "", "source": record.path, "subject": record.subject,
                     "status": result.status, "reason": result.reason, **record.meta})
    table = pd.DataFrame(rows)
    table.to_csv(out / "london_meta.csv", index=False)
    print(f"{int((table['file'] != '').sum())} of {len(table)} photos cropped ({dict(align)}) into {out / 'crops'}; "
          f"preprocessing config {preprocessor.config_hash}")
    return table


def label(row: pd.Series, task: str) -> str:
    """The class of a photo in a London task (as ``facediag.data.london.LondonFaces``)."""
    return {"sex": row["sex"], "expression": row["expression"], "sex_expression": f"{row['sex']}_{row['expression']}"}[
        task
    ]


def trees(src: Path, out: Path) -> None:
    """``out/<task>/<class>/<file>`` symbolic links to ``src/crops/<file>`` and ``out/<task>_subjects.csv``."""
    meta = pd.read_csv(src / "london_meta.csv", dtype=str, keep_default_na=False)
    meta = meta[meta["file"] != ""]
    for task in TASKS:
        rows = []
        for _, row in meta.iterrows():
            cls = label(row, task)
            link = out / task / cls / row["file"]
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to((src / "crops" / row["file"]).resolve())
            rows.append({"path": f"{cls}/{row['file']}", "label": cls, "subject": row["subject"], "sex": row["sex"],
                         "age": row["age"], "ethnicity": row["ethnicity"], "expression": row["expression"]})
        pd.DataFrame(rows).to_csv(out / f"{task}_subjects.csv", index=False)
        print(f"{task}: {len(rows)} images in {out / task}")


def folder_overrides(out: Path, task: str) -> list[str]:
    """The `data=folder` overrides that read the ``task`` tree as London (person ids from the subjects CSV)."""
    return ["data=folder", f"data.root={out / task}", f"data.subjects_csv={out / task}_subjects.csv",
            f"data.task={task}", "data.identity_grouping=off", "preprocess=none"]


def check(out: Path, seeds: tuple[int, ...] = (0, 1), sizes: tuple[str, ...] = ("5", "10", "20", "null")) -> int:
    """Compare person -> role (train / val / test) of `data=folder` on the trees with `data=london`, for every
    task, split seed, size and fold of the learning curves (5 folds); prints and returns the mismatches."""
    from facediag.data.build import prepare_data

    mismatches = compared = 0
    for task in TASKS:
        for seed in seeds:
            for size in sizes:
                for fold in range(5):
                    common = ["data.n_folds=5", f"data.fold={fold}", f"data.split_seed={seed}",
                              f"data.train_subjects_per_class={size}"]
                    roles = []
                    for overrides in (["data=london", f"data.task={task}"], folder_overrides(out, task)):
                        split = prepare_data(compose(overrides + common).data).split
                        roles.append(split.assign(photo=[Path(p).stem for p in split["path"]])
                                     .set_index("photo")[["subject", "label", "role"]].sort_index())
                    compared += 1
                    if not roles[0].equals(roles[1]):
                        mismatches += 1
                        print(f"MISMATCH {task} seed {seed} size {size} fold {fold}")
    print(f"{compared} splits compared (tasks x seeds x sizes x folds): {mismatches} differ")
    return mismatches


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "check":
        sys.exit(1 if check(Path(sys.argv[2])) else 0)
    if len(sys.argv) >= 3 and sys.argv[1] == "export":
        export(Path(sys.argv[2]))
    elif len(sys.argv) >= 4 and sys.argv[1] == "trees":
        trees(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        sys.exit(__doc__)
