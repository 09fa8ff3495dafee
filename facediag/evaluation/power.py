"""Power curves and the minimum detectable effect of a sweep over simulated effect sizes (``data.strength``).

A sweep over ``data=simulated`` trees of several strengths (``experiment=simulated_power``) gives one pooled row
per method × strength × training people per class (facediag.evaluation.sweep). Here they become power curves
(accuracy against effect size in SD, one panel per training size, the rows' 95% intervals as error bars, chance
dashed) and the **minimum detectable effect** table: per method and training size, the smallest strength above
0 whose pooled 95% interval lies wholly above chance (1 / number of classes), with that interval. A strength-0
(null) row above chance is flagged: there the classes differ in nothing but their people.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from facediag.evaluation.curves import ALL, CURVE_KEY, size_label, training_people_per_class
from facediag.evaluation.report import Report, fmt_interval
from facediag.evaluation.runs import get_dotted
from facediag.scoring.plots import save_figure

STRENGTH_KEY = "data.strength"
NOT_DETECTED = "not detected"


def _method(row: Any) -> str:
    """The row's name without the strength and training-size settings (the axes of the power curves)."""
    d = row.description
    text = "/".join(str(p) for p in (d.get("backbone"), d.get("weights"), d.get("strategy")) if p)
    if row.variant and row.variant != d.get("strategy"):
        text += f" {row.variant}"
    others = [s for s in str(row.setting or "").split(", ")
              if s and not s.startswith((STRENGTH_KEY + "=", CURVE_KEY + "="))]
    return text + (f" [{', '.join(others)}]" if others else "")


def power_points(rows: Sequence[Any]) -> pd.DataFrame:
    """One point per (dataset, task, method, training size, strength) from the sweep's table rows; empty unless
    the sweep has rows of at least two ``data.strength`` values."""
    records = []
    for row in rows:
        if row.failed or not row.entries or row.entries[0].run is None:
            continue
        config, run = row.entries[0].config, row.entries[0].run
        strength = get_dotted(config, STRENGTH_KEY)
        if strength is None:
            continue
        size = get_dotted(config, CURVE_KEY)
        people = [p for p in (training_people_per_class(e.run.split) for e in row.entries if e.run is not None)
                  if p is not None]
        m = row.metrics
        records.append({
            "dataset": row.description.get("dataset"), "task": row.description.get("task"), "method": _method(row),
            "train_subjects_per_class": ALL if size in (None, "null") else int(size),
            "people_per_class": float(np.mean(people)) if people else np.nan, "strength": float(strength),
            "n_runs": len(row.entries), "n": m.get("n"), "accuracy": m["accuracy"],
            "accuracy_lo": m["accuracy_ci"][0], "accuracy_hi": m["accuracy_ci"][1],
            "chance": 1.0 / len(run.classes), "evaluation": row.evaluation,
        })
    frame = pd.DataFrame(records)
    if frame.empty or frame["strength"].nunique() < 2:
        return pd.DataFrame()
    return frame.sort_values(["dataset", "task", "method", "train_subjects_per_class", "strength"],
                             key=lambda c: c.astype(str) if c.name == "train_subjects_per_class" else c,
                             ).reset_index(drop=True)


def mde_table(points: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, task, method, training size): ``mde`` (the smallest strength > 0 whose 95% interval lies
    above chance; NaN when none does), its accuracy and interval, the largest strength tried, and whether the null
    (strength 0) row was above chance (``null_above_chance``, NaN without a null row)."""
    records = []
    keys = ["dataset", "task", "method", "train_subjects_per_class"]
    for key, part in points.groupby(keys, sort=False, dropna=False):
        part = part.sort_values("strength")
        detected = part[(part["strength"] > 0) & (part["accuracy_lo"] > part["chance"])]
        null = part[part["strength"] == 0]
        first = detected.iloc[0] if len(detected) else None
        records.append({
            **dict(zip(keys, key, strict=True)), "people_per_class": part["people_per_class"].mean(),
            "chance": part["chance"].iloc[0], "mde": first["strength"] if first is not None else np.nan,
            "accuracy": first["accuracy"] if first is not None else np.nan,
            "accuracy_lo": first["accuracy_lo"] if first is not None else np.nan,
            "accuracy_hi": first["accuracy_hi"] if first is not None else np.nan,
            "max_strength": part["strength"].max(),
            "null_above_chance": bool(null["accuracy_lo"].iloc[0] > null["chance"].iloc[0]) if len(null) else np.nan,
        })
    return pd.DataFrame(records)


def size_order(sizes: Any) -> list[Any]:
    """Training sizes in reading order: numbers ascending, then ``all``."""
    unique = list(dict.fromkeys(sizes))
    return sorted(unique, key=lambda s: (str(s) == ALL, float(s) if str(s) != ALL else 0.0))


def mde_display(mde: pd.DataFrame) -> pd.DataFrame:
    """Methods × training sizes of one task: ``<SD> SD: accuracy [95% CI]`` or ``not detected (≤ <max> SD)``."""
    table = pd.DataFrame({"method": list(dict.fromkeys(mde["method"]))})
    for size in size_order(mde["train_subjects_per_class"]):
        part = mde[mde["train_subjects_per_class"] == size]
        cells = {}
        for r in part.itertuples():
            cell = (f"{r.mde:g} SD: {fmt_interval(r.accuracy, r.accuracy_lo, r.accuracy_hi)}" if np.isfinite(r.mde)
                    else f"{NOT_DETECTED} (≤ {r.max_strength:g} SD)")
            cells[r.method] = cell + (" (null above chance!)" if r.null_above_chance is True else "")
        table[size_label(size, part["people_per_class"].mean())] = [cells.get(m, "–") for m in table["method"]]
    return table


def power_figure(points: pd.DataFrame, title: str) -> Figure:
    """Accuracy (± its 95% interval) against effect size, one line per method, one panel per training size."""
    sizes = size_order(points["train_subjects_per_class"])
    methods = list(dict.fromkeys(points["method"]))
    figure = Figure(figsize=(4.2 * len(sizes) + 0.5, 4.6 + 0.22 * len(methods)), dpi=110)
    axes = figure.subplots(1, len(sizes), sharey=True, squeeze=False)[0]
    for ax, size in zip(axes, sizes, strict=True):
        part = points[points["train_subjects_per_class"] == size]
        for i, method in enumerate(methods):
            line = part[part["method"] == method].sort_values("strength")
            if line.empty:
                continue
            x = line["strength"].to_numpy() + 0.02 * (i - (len(methods) - 1) / 2)  # spread overlapping bars
            y = line["accuracy"].to_numpy()
            error = np.clip(np.vstack([y - line["accuracy_lo"].to_numpy(), line["accuracy_hi"].to_numpy() - y]), 0,
                            None)
            ax.errorbar(x, y, yerr=error, marker="o", capsize=3, label=method, color=f"C{i % 10}")  # one colour each
        ax.axhline(part["chance"].iloc[0], color="grey", linestyle="--", linewidth=1, label="chance")
        ax.set_title(f"{size_label(size, part['people_per_class'].mean())} training people / class", fontsize=9)
        ax.set_xlabel("effect size (SD of the condition's measure)")
        ax.set_xticks(sorted(part["strength"].unique()))
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (95% CI)")
    legend = {label: handle for ax in axes for handle, label in zip(*ax.get_legend_handles_labels(), strict=True)}
    figure.legend(legend.values(), legend.keys(), loc="lower center", fontsize=7, ncol=1 if len(sizes) < 2 else 2)
    figure.suptitle(title)
    figure.tight_layout(rect=(0, 0.04 + 0.045 * ((len(methods) + 2) // (1 if len(sizes) < 2 else 2)), 1, 1))
    return figure


def add_power_curves(rows: Sequence[Any], report: Report, out_dir: str | Path) -> dict[str, Path]:
    """Report section, ``power.csv``, ``mde.csv`` and ``figures/power_<dataset>_<task>.png`` for a sweep over
    ``data.strength``; nothing for other sweeps."""
    points = power_points(rows)
    if points.empty:
        return {}
    out_dir = Path(out_dir)
    mde = mde_table(points)
    files = {"power": out_dir / "power.csv", "mde": out_dir / "mde.csv"}
    points.to_csv(files["power"], index=False)
    mde.to_csv(files["mde"], index=False)
    report.heading("Power curves and minimum detectable effect")
    report.text("Test accuracy against the simulated effect size (data.strength, in SD of each condition's measure "
                "on the source faces), per training size. Error bars: the pooled rows' 95% intervals (people-level, "
                "as in the sweep table). Minimum detectable effect: the smallest strength above 0 whose interval "
                "lies wholly above chance (1 / number of classes); each row had one test look per fold and repeat.")
    for (dataset, task), part in points.groupby(["dataset", "task"], sort=False):
        report.heading(f"{dataset} / {task}", level=3)
        own = mde[(mde["dataset"] == dataset) & (mde["task"] == task)]
        report.table(mde_display(own), caption=f"{dataset} / {task}: minimum detectable effect by training people "
                     f"per class (chance {own['chance'].iloc[0]:.2f})")
        slug = "".join(ch if ch.isalnum() else "_" for ch in f"{dataset}_{task}")
        png = save_figure(power_figure(part, f"{dataset} / {task}: power curves"),
                          out_dir / "figures" / f"power_{slug}.png")
        files[f"power_{slug}"] = png
        report.figure(png, caption=f"{dataset} / {task}: accuracy against effect size")
    return files
