"""Learning curves: accuracy against training people per class (``data.train_subjects_per_class``).

A sweep over ``data.train_subjects_per_class`` (null = every training person) gives one pooled row per
method × size (facediag.evaluation.sweep); here they become one curve per method and variant for each
dataset / task, with the rows' 95% intervals as error bars, a table (``learning_curves.csv`` and a
report section) and a figure per task. The test part of every point is the same fold (the option
subsamples the training part only), so the curve shows what fewer training people cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from facediag.evaluation.report import Report, fmt_interval
from facediag.evaluation.runs import get_dotted
from facediag.scoring.plots import save_figure

CURVE_KEY = "data.train_subjects_per_class"
ALL = "all"


def training_people_per_class(split: pd.DataFrame | None) -> float | None:
    """Mean over classes of the distinct people with training (train + val) photos of that class."""
    if split is None or split.empty:
        return None
    training = split[split["role"].isin(["train", "val"])]
    counts = training.groupby("label")["subject"].nunique()
    return float(counts.mean()) if len(counts) else None


def _method(row: Any) -> str:
    d = row.description
    text = "/".join(str(p) for p in (d.get("backbone"), d.get("weights"), d.get("strategy")) if p)
    if row.variant and row.variant != d.get("strategy"):
        text += f" {row.variant}"
    others = [s for s in str(getattr(row, "setting", "") or "").split(", ") if s and not s.startswith(CURVE_KEY)]
    return text + (f" [{', '.join(others)}]" if others else "")


def without_needless_settings(frame: pd.DataFrame) -> pd.Series:
    """Method labels without their ``[settings]`` where backbone / weights / strategy / variant alone already
    tell the curves of a dataset / task apart (two fused presets with other sources differ in many keys)."""
    base = frame["method"].str.replace(r" \[.*\]$", "", regex=True)
    curves = frame.assign(base=base).groupby(["dataset", "task", "base"])["method"].transform("nunique")
    return frame["method"].where(curves > 1, base)


def curve_points(rows: Sequence[Any]) -> pd.DataFrame:
    """One point per (dataset, task, method, size) from the sweep's table rows; empty when the sweep has no
    run with ``data.train_subjects_per_class`` set."""
    records = []
    for row in rows:
        if row.failed or not row.entries or row.entries[0].run is None:
            continue
        config = row.entries[0].config
        if get_dotted(config, "data") is None or "train_subjects_per_class" not in get_dotted(config, "data"):
            continue
        size = get_dotted(config, CURVE_KEY)
        people = [training_people_per_class(e.run.split) for e in row.entries if e.run is not None]
        people = [p for p in people if p is not None]
        m = row.metrics
        records.append({
            "dataset": row.description.get("dataset"), "task": row.description.get("task"), "method": _method(row),
            "train_subjects_per_class": ALL if size in (None, "null") else int(size),
            "people_per_class": float(np.mean(people)) if people else np.nan,
            "n_runs": len(row.entries), "n": m.get("n"), "accuracy": m["accuracy"],
            "accuracy_lo": m["accuracy_ci"][0], "accuracy_hi": m["accuracy_ci"][1],
            "accuracy_sd": m.get("accuracy_sd"), "evaluation": row.evaluation,
        })
    frame = pd.DataFrame(records)
    if frame.empty or not (frame["train_subjects_per_class"] != ALL).any():
        return pd.DataFrame()
    frame["method"] = without_needless_settings(frame)
    frame["x"] = [p if s == ALL else float(s) for s, p in zip(frame["train_subjects_per_class"],
                                                              frame["people_per_class"], strict=True)]
    return frame.sort_values(["dataset", "task", "method", "x"]).reset_index(drop=True)


def size_label(size: Any, people: float) -> str:
    return f"all (≈{people:.0f})" if size == ALL and np.isfinite(people) else str(size)


def curve_figure(points: pd.DataFrame, title: str) -> Figure:
    """Accuracy (± its 95% interval) against training people per class, one line per method."""
    figure = Figure(figsize=(7.5, 4.8), dpi=110)
    ax = figure.add_subplot(1, 1, 1)
    methods = list(dict.fromkeys(points["method"]))
    for i, method in enumerate(methods):
        part = points[points["method"] == method]
        x = part["x"].to_numpy() * (1 + 0.015 * (i - (len(methods) - 1) / 2))  # spread overlapping bars
        y = part["accuracy"].to_numpy()
        # the point is the mean over repeats, the interval the pooled rows' (a person bootstrap may leave it out;
        # a perfect row's upper bound can come back as 1 - 1e-16): never a negative error bar
        error = np.clip(np.vstack([y - part["accuracy_lo"].to_numpy(), part["accuracy_hi"].to_numpy() - y]), 0, None)
        ax.errorbar(x, y, yerr=error, marker="o", capsize=3, label=method)
    ticks = points.drop_duplicates("x").sort_values("x")
    ax.set_xscale("log")
    ax.set_xticks(ticks["x"], [size_label(s, p) for s, p in zip(ticks["train_subjects_per_class"],
                                                                  ticks["people_per_class"], strict=True)])
    ax.minorticks_off()
    ax.set_xlabel("training people per class")
    ax.set_ylabel("test accuracy (95% CI)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    return figure


def curve_table(points: pd.DataFrame) -> pd.DataFrame:
    """Methods × sizes of one task: accuracy [95% CI] as display strings."""
    columns = {}
    for (size, x), part in points.groupby(["train_subjects_per_class", "x"], sort=False):
        columns[x] = (size_label(size, part["people_per_class"].mean()), part)
    table = pd.DataFrame({"method": list(dict.fromkeys(points["method"]))})
    for x in sorted(columns):
        label, part = columns[x]
        cells = {m: fmt_interval(a, lo, hi) for m, a, lo, hi in
                 zip(part["method"], part["accuracy"], part["accuracy_lo"], part["accuracy_hi"], strict=True)}
        table[label] = [cells.get(m, "–") for m in table["method"]]
    return table


def add_learning_curves(rows: Sequence[Any], report: Report, out_dir: str | Path) -> dict[str, Path]:
    """Report section, ``learning_curves.csv`` and ``figures/learning_curve_<dataset>_<task>.png`` for a sweep
    over ``data.train_subjects_per_class``; nothing for other sweeps."""
    points = curve_points(rows)
    if points.empty:
        return {}
    out_dir = Path(out_dir)
    files = {"learning_curves": out_dir / "learning_curves.csv"}
    points.to_csv(files["learning_curves"], index=False)
    report.heading("Learning curves")
    report.text("Test accuracy against the number of training people per class (data.train_subjects_per_class: "
                "the training part is subsampled, the test folds stay the same). Error bars: the pooled rows' 95% "
                "intervals (as in the sweep table); 'all' sits at the mean number of training people per class.")
    for (dataset, task), part in points.groupby(["dataset", "task"], sort=False):
        report.heading(f"{dataset} / {task}", level=3)
        report.table(curve_table(part), caption=f"{dataset} / {task}: accuracy [95% CI] by training people per class")
        slug = "".join(ch if ch.isalnum() else "_" for ch in f"{dataset}_{task}")
        png = save_figure(curve_figure(part, f"{dataset} / {task}: learning curves"),
                          out_dir / "figures" / f"learning_curve_{slug}.png")
        files[f"learning_curve_{slug}"] = png
        report.figure(png, caption=f"{dataset} / {task}: accuracy against training people per class")
    return files
