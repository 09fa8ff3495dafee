"""Metrics per subgroup of the manifest's metadata columns (London: sex, age, ethnicity, expression)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from facediag.data.records import MANIFEST_COLUMNS
from facediag.scoring.metrics import classification_metrics
from facediag.scoring.results import subjects_of, targets_and_scores

UNKNOWN = "unknown"
MAX_CATEGORIES = 8  # a numeric column with more distinct values than this is binned
SMALL_N = 10  # cells with fewer test images are flagged: their rates are anecdotes, whatever the interval says
SUBGROUP_COLUMNS = ["attribute", "group", "n", "people", "small_n", "n_per_class", "n_correct", "accuracy",
                    "accuracy_lo", "accuracy_hi", "ci_method"]


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

    Columns: attribute, group, n (images), people, small_n (n < SMALL_N), n_per_class, n_correct, accuracy
    with its 95% interval (``_lo`` / ``_hi``; person-level, ``ci_method``), then sensitivity / specificity
    (binary) or balanced_accuracy (multiclass) and AUC, each with its interval. Empty without metadata.
    """
    columns = metadata_columns(manifest)
    if not columns or predictions.empty:
        return pd.DataFrame(columns=SUBGROUP_COLUMNS)
    meta = manifest.drop_duplicates("path").set_index(manifest.drop_duplicates("path")["path"].astype(str))
    joined = predictions.reset_index(drop=True).join(meta[columns], on="path")
    y_all, scores_all = targets_and_scores(joined, classes)
    subjects = subjects_of(joined)
    rows = []
    for column in columns:
        groups = group_labels(joined[column], (bands or {}).get(column))
        for group in groups.cat.categories:
            mask = (groups == group).to_numpy()
            if not mask.any():
                continue
            people = None if subjects is None else subjects[mask]
            m = classification_metrics(y_all[mask], scores_all[mask], classes, positive, groups=people)
            counts = pd.Series(y_all[mask]).value_counts()
            row = {
                "attribute": column,
                "group": str(group),
                "n": m["n"],
                "people": int(len(set(people))) if people is not None else m["n"],
                "small_n": m["n"] < SMALL_N,
                "n_per_class": ", ".join(f"{c} {int(counts.get(i, 0))}" for i, c in enumerate(classes)),
                "n_correct": m["n_correct"],
                "accuracy": m["accuracy"],
                "accuracy_lo": m["accuracy_ci"][0],
                "accuracy_hi": m["accuracy_ci"][1],
                "ci_method": m["accuracy_ci_method"],
            }
            keys = ("sensitivity", "specificity", "auc") if len(classes) == 2 else ("balanced_accuracy", "auc")
            for key in keys:
                interval = m[f"{key}_ci"] or [None, None]
                row.update({key: m[key], f"{key}_lo": interval[0], f"{key}_hi": interval[1]})
            rows.append(row)
    return pd.DataFrame(rows)
