"""From the `data` config to a manifest and a checked split, written to the run dir."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig

from facediag.data.records import build_manifest, usable
from facediag.data.splits import make_split

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """A dataset source with its manifest (every file found) and split (usable rows with roles)."""

    source: Any
    manifest: pd.DataFrame
    split: pd.DataFrame

    @property
    def classes(self) -> list[str]:
        return list(self.source.classes)

    @property
    def positive(self) -> str | None:
        return self.source.positive


def split_kwargs(data_cfg: DictConfig) -> dict[str, Any]:
    """The split options of a `data` config."""
    keys = ("n_folds", "fold", "split_seed", "val_size", "n_train", "n_test")
    return {
        "kind": data_cfg.split,
        **{k: data_cfg[k] for k in keys},
        "train_subjects_per_class": data_cfg.get("train_subjects_per_class"),
    }


def count_table(split: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """Images per class (rows) and role (columns), with totals."""
    table = pd.crosstab(
        pd.Categorical(split["label"], categories=classes),
        split["role"],
        margins=True,
        margins_name="total",
        dropna=False,
    )
    table.index.name, table.columns.name = "class", None
    return table[[c for c in ("train", "val", "test", "total") if c in table.columns]]


def subsample_subjects(table: pd.DataFrame, per_class: int, seed: int) -> pd.DataFrame:
    """Keep ``per_class`` subjects of each class (seeded): quick checks and tests on a tiny subset."""
    rng = np.random.default_rng(seed)
    keep: set[str] = set()
    for _, rows in table.groupby("label"):
        subjects = sorted(set(rows["subject"]) - keep)
        keep.update(rng.permutation(subjects)[:per_class])
    return table[table["subject"].isin(keep)].reset_index(drop=True)


def prepare_data(
    data_cfg: DictConfig, out_dir: str | Path | None = None, cache_dir: str | Path | None = None
) -> PreparedData:
    """Instantiate the source, build the manifest and the split; write manifest.csv and split.csv."""
    source = instantiate(data_cfg.source, _convert_="all")
    manifest = build_manifest(source.records(), cache_dir=cache_dir)
    bad = manifest[~manifest["status"].isin(["ok"]) & ~manifest["status"].str.startswith("excluded")]
    for _, row in bad.iterrows():
        log.warning("skipped %s: %s", row["path"], row["status"])
    table = usable(manifest)
    if data_cfg.get("max_subjects_per_class"):
        table = subsample_subjects(table, int(data_cfg.max_subjects_per_class), int(data_cfg.split_seed))
    split = make_split(table, **split_kwargs(data_cfg))
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        manifest.to_csv(out_dir / "manifest.csv", index=False)
        split.to_csv(out_dir / "split.csv", index=False)
    return PreparedData(source, manifest, split)
