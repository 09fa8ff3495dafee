"""Metrics per subgroup of the manifest's metadata columns (London: sex, age, ethnicity, expression)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from facediag.data.records import MANIFEST_COLUMNS
from facediag.metrics import classification_metrics
from facediag.results import score_columns

UNKNOWN = "unknown"
MAX_CATEGORIES = 8  # a numeric column with more distinct values than this is binned
SUBGROUP_COLUMNS = ["attribute", "group", "n", "n_per_class", "n_correct", "accuracy", "accuracy_lo", "accuracy_hi"]


def metadata_columns(manifest: pd.DataFrame) -> list[str]:
    """The manifest's metadata columns (beyond the contract's fixed ones) that hold any value."""
    return [c for c in manifest.columns if c not in MANIFEST_COLUMNS and manifest[c].notna().any()]


def _band_name(lo: float, hi: float) -> str:
    return f"{lo:g}-{hi:g}"


def group_labels(values: pd.Series, bands: Sequence[Sequence[float]] | None = None) -> pd.Series:
    """One group name per value: categories as they are, numbers binned (``bands`` [[lo, hi], ...] inclusive,
    else quartiles when there are more than MAX_CATEGORIES distinct numbers); missing → 'unknown'.

    The result is an ordered categorical (bands in numeric order, 'unknown' last).
    """
    numbers = pd.to_numeric(values, errors="coerce")
    is_numeric = values.notna().any() and numbers.notna().sum() == values.notna().sum()
    if is_numeric and (bands is not None or numbers.nunique() > MAX_CATEGORIES):
        labels = pd.Series([None] * len(values), index=values.index, dtype=object)
        order: list[str] = []
        if bands is None:  # quartiles, each named by the smallest and largest value it holds
            edges = np.unique(np.quantile(numbers.dropna(), [0.0, 0.25, 0.5, 0.75, 1.0]))
            cut = pd.cut(numbers, bins=edges, include_lowest=True)
            masks = [(cut == interval).to_numpy() for interval in cut.cat.categories]
            named = [(m, _band_name(numbers[m].min(), numbers[m].max())) for m in masks if m.any()]
        else:
            named = [(((numbers >= lo) & (numbers <= hi)).to_numpy(), _band_name(lo, hi)) for lo, hi in bands]
            named.append((numbers.notna().to_numpy(), "other"))  # outside every band
        for mask, name in named:
            labels[mask & labels.isna().to_numpy()] = name
            order.append(name)
    else:
        as_text = (lambda v: f"{float(v):g}") if is_numeric else str
        labels = pd.Series([None if pd.isna(v) else as_text(v) for v in values], index=values.index, dtype=object)
        order = sorted(set(labels.dropna()))
    labels = labels.fillna(UNKNOWN)
    order = [g for g in [*order, UNKNOWN] if g in set(labels)]
    return pd.Series(pd.Categorical(labels, categories=order, ordered=True), index=values.index)


def subgroup_table(
    predictions: pd.DataFrame,
    manifest: pd.DataFrame,
    classes: Sequence[str],
    positive: str | None = None,
    bands: dict[str, Sequence[Sequence[float]]] | None = None,
) -> pd.DataFrame:
    """Metrics of one variant's test predictions per metadata subgroup, joined to the manifest on ``path``.

    Columns: attribute, group, n, n_per_class, n_correct, accuracy (Wilson 95% lo / hi), then
    sensitivity / specificity (binary) or balanced_accuracy (multiclass). Empty when there is no metadata.
    """
    columns = metadata_columns(manifest)
    if not columns or predictions.empty:
        return pd.DataFrame(columns=SUBGROUP_COLUMNS)
    meta = manifest.drop_duplicates("path").set_index(manifest.drop_duplicates("path")["path"].astype(str))
    joined = predictions.reset_index(drop=True).join(meta[columns], on="path")
    index = {c: i for i, c in enumerate(classes)}
    y_all = joined["label"].map(index).to_numpy()
    scores_all = joined[score_columns(classes)].to_numpy(dtype=np.float64)
    rows = []
    for column in columns:
        groups = group_labels(joined[column], (bands or {}).get(column))
        for group in groups.cat.categories:
            mask = (groups == group).to_numpy()
            if not mask.any():
                continue
            m = classification_metrics(y_all[mask], scores_all[mask], classes, positive)
            counts = pd.Series(y_all[mask]).value_counts()
            row = {
                "attribute": column,
                "group": str(group),
                "n": m["n"],
                "n_per_class": ", ".join(f"{c} {int(counts.get(i, 0))}" for i, c in enumerate(classes)),
                "n_correct": m["n_correct"],
                "accuracy": m["accuracy"],
                "accuracy_lo": m["accuracy_ci"][0],
                "accuracy_hi": m["accuracy_ci"][1],
            }
            if len(classes) == 2:
                row.update(sensitivity=m["sensitivity"], specificity=m["specificity"])
            else:
                row.update(balanced_accuracy=m["balanced_accuracy"])
            rows.append(row)
    return pd.DataFrame(rows)
