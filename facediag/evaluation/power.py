"""Power curves and the minimum detectable effect of a sweep over simulated effect sizes (``data.strength``).

A sweep over ``data=simulated`` trees of several strengths (``experiment=simulated_power``) gives one pooled row
per method × strength × training people per class (facediag.evaluation.sweep). Here they become power curves
(accuracy against effect size in SD, one panel per training size, the rows' 95% intervals as error bars, chance
dotted) and the **minimum detectable effect** table: per method and training size, the smallest strength above
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
IDEAL = "ideal observer (LDA on the true measures; a ceiling: reads truth.csv, not the photo)"


class TruthError(ValueError):
    """A simulated tree's truth.csv lacks the measures the ideal observer reads."""


def tree_of(split: pd.DataFrame) -> Path:
    """The simulated tree a run's split points into (``<tree>/<class>/<photo>``)."""
    return Path(str(split["path"].iloc[0])).parents[1]


def true_measures(tree: str | Path) -> pd.DataFrame:
    """Per photo (index: ``<class>/<file>``, as in truth.csv), the standardised measure of every descriptor of
    ``tree`` (``truth.csv``)."""
    tree = Path(tree)
    names = [f"measure_{c}" for c in pd.read_csv(tree / "conditions.csv")["condition"]]
    truth = pd.read_csv(tree / "truth.csv", dtype={"subject": str})
    missing = [c for c in names if c not in truth.columns]
    if missing:
        raise TruthError(f"{tree / 'truth.csv'} has no {', '.join(missing)} (written before the measures were): "
                         f"python -m facediag.simulate.measures {tree}")  # fmt: skip
    return truth.set_index("path")[names]


def ideal_scores(measures: pd.DataFrame, split: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """The test rows of ``split`` (``subject``, ``label``, ``score_<class>``): LDA on ``measures`` fitted on the
    split's training people (roles train and val), its class probabilities on the test people."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    photos = ["/".join(Path(str(p)).parts[-2:]) for p in split["path"]]  # <tree>/<class>/<file>: the truth's key
    training = split["role"].isin(["train", "val"]).to_numpy()
    test = (split["role"] == "test").to_numpy()
    x = measures.loc[photos].to_numpy(dtype=float)
    model = LinearDiscriminantAnalysis().fit(x[training], split["label"].to_numpy()[training])
    probabilities = pd.DataFrame(model.predict_proba(x[test]), columns=model.classes_).reindex(columns=classes,
                                                                                                fill_value=0.0)
    scores = probabilities.add_prefix("score_").reset_index(drop=True)
    return pd.concat([split.loc[test, ["subject", "label"]].reset_index(drop=True), scores], axis=1)


def ideal_cv(
    truth: pd.DataFrame, n_folds: int = 5, split_seed: int = 0, per_class: int | None = None, val_size: float = 0.2
) -> dict[str, Any]:
    """The ideal observer on a tree's (or a design's, :func:`facediag.simulate.measures.design_measures`) truth rows
    (``path, subject, class, measure_<descriptor>...``) over facediag's own person-grouped k-fold splits (the
    splits a sweep's jobs of that seed and training size get): pooled accuracy, Wilson 95% interval over people."""
    from facediag.data.splits import make_split
    from facediag.scoring.stats import wilson_interval

    table = truth.assign(label=truth["class"], sha256=truth["path"])
    measures = truth.set_index("path")[[c for c in truth.columns if c.startswith("measure_")
                                       and c not in ("measure_before", "measure_after")]]  # fmt: skip
    classes = sorted(table["label"].unique())
    pooled = pd.concat([ideal_scores(measures, make_split(table, n_folds=n_folds, fold=fold, split_seed=split_seed,
                                                          val_size=val_size, train_subjects_per_class=per_class),
                                     classes) for fold in range(n_folds)])  # fmt: skip
    right = int((np.array(classes)[pooled[[f"score_{c}" for c in classes]].to_numpy().argmax(axis=1)]
                 == pooled["label"].to_numpy()).sum())  # fmt: skip
    low, high = wilson_interval(right, len(pooled))
    return {"n": len(pooled), "accuracy": right / len(pooled), "accuracy_lo": low, "accuracy_hi": high}


def ideal_point(runs: Sequence[Any], fitted: dict[tuple[Any, ...], pd.DataFrame] | None = None
                ) -> dict[str, Any] | None:
    """Accuracy and people-level 95% interval of the ideal observer over the distinct splits of ``runs`` (one per
    tree, split seed, fold and training size; several split seeds: the mean over repeats, as the sweep pools
    them). ``fitted``: split -> test scores, filled and reused across calls (one fit per split)."""
    from facediag.scoring.stats import metric_intervals

    fitted = {} if fitted is None else fitted
    splits: dict[tuple[Any, ...], Any] = {}
    for run in runs:
        if run is None or run.split is None or run.split.empty:
            continue
        key = (str(tree_of(run.split)), run.setting("data.split_seed"), run.setting("data.fold"),
               run.setting(CURVE_KEY))  # fmt: skip
        splits.setdefault(key, run)
    if not splits:
        return None
    parts, seeds = [], []
    for key, run in splits.items():
        if key not in fitted:
            fitted[key] = ideal_scores(true_measures(key[0]), run.split, list(run.classes))
        parts.append(fitted[key])
        seeds += [key[1]] * len(parts[-1])
    classes = list(next(iter(splits.values())).classes)
    pooled = pd.concat(parts, ignore_index=True)
    y_true = pooled["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    scores = pooled[[f"score_{c}" for c in classes]].to_numpy()
    right = scores.argmax(axis=1) == y_true
    repeats = np.asarray(seeds, dtype=str)
    accuracy = float(np.mean([right[repeats == r].mean() for r in dict.fromkeys(repeats)]))
    positive = 1 if len(classes) == 2 else None  # as the sweep's pooled rows
    intervals, _ = metric_intervals(y_true, scores, positive, pooled["subject"].astype(str).to_numpy(), repeats)
    low, high = intervals["accuracy"]
    return {"n_runs": len(splits), "n": int(len(pooled) / len(set(repeats))), "accuracy": accuracy,
            "accuracy_lo": low, "accuracy_hi": high}  # fmt: skip


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
            "chance": 1.0 / len(run.classes), "evaluation": row.evaluation, "reads": "photo",
            "_runs": [e.run for e in row.entries],
        })
    frame = pd.DataFrame(records)
    if frame.empty or frame["strength"].nunique() < 2:
        return pd.DataFrame()
    fitted: dict[tuple[Any, ...], pd.DataFrame] = {}
    frame["ceiling"] = [_ceiling(runs, fitted) for runs in frame["_runs"]]
    frame = pd.concat([frame, ideal_rows(frame, fitted)], ignore_index=True).drop(columns="_runs")
    return frame.sort_values(["dataset", "task", "method", "train_subjects_per_class", "strength"],
                             key=lambda c: c.astype(str) if c.name == "train_subjects_per_class" else c,
                             ).reset_index(drop=True)


def _ceiling(runs: Sequence[Any], fitted: dict[tuple[Any, ...], pd.DataFrame]) -> float:
    """The ideal observer's accuracy on exactly these runs' splits (NaN without the truth's measures)."""
    try:
        point = ideal_point(runs, fitted)
    except TruthError:
        return np.nan
    return np.nan if point is None else point["accuracy"]


def ideal_rows(frame: pd.DataFrame, fitted: dict[tuple[Any, ...], pd.DataFrame] | None = None) -> pd.DataFrame:
    """One ideal-observer row per (dataset, task, training size, strength) of the methods' rows, over the union of
    their splits; none (and a printed note) for a tree whose truth.csv lacks the measures."""
    records = []
    keys = ["dataset", "task", "train_subjects_per_class", "strength"]
    for key, part in frame.groupby(keys, sort=False, dropna=False):
        try:
            point = ideal_point([run for runs in part["_runs"] for run in runs], fitted)
        except TruthError as err:
            print(f"ideal observer left out: {err}")
            continue
        if point is None:
            continue
        records.append({**dict(zip(keys, key, strict=True)), "method": IDEAL,
                        "people_per_class": part["people_per_class"].mean(), **point,
                        "chance": part["chance"].iloc[0], "evaluation": "test", "reads": "truth",
                        "ceiling": point["accuracy"]})  # fmt: skip
    return pd.DataFrame(records)


def ceiling_share(points: pd.DataFrame) -> pd.DataFrame:
    """``points`` with ``ceiling`` (the ideal observer's accuracy on the row's own splits, as
    :func:`power_points` gives it; where absent, the ideal row's of the same dataset, task, training size and
    strength), ``share_of_ceiling`` (accuracy / ceiling) and ``share_above_chance`` ((accuracy - chance) /
    (ceiling - chance), NaN where the ceiling is within 0.05 of chance)."""
    keys = ["dataset", "task", "train_subjects_per_class", "strength"]
    ideal = points.loc[points["method"] == IDEAL, [*keys, "accuracy"]].rename(columns={"accuracy": "cell_ceiling"})
    merged = points.drop(columns=["share_of_ceiling", "share_above_chance"], errors="ignore").merge(ideal, on=keys,
                                                                                                    how="left")
    own = merged["ceiling"] if "ceiling" in merged.columns else pd.Series(np.nan, index=merged.index)
    merged["ceiling"] = own.fillna(merged.pop("cell_ceiling"))
    merged["share_of_ceiling"] = merged["accuracy"] / merged["ceiling"]
    above = (merged["ceiling"] - merged["chance"]).where(lambda d: d > 0.05)
    merged["share_above_chance"] = (merged["accuracy"] - merged["chance"]) / above
    return merged


def ceiling_display(points: pd.DataFrame) -> pd.DataFrame:
    """Methods × (training size, strength) of one task: ``accuracy [95% CI]``, and for a method its share of the
    ideal observer's accuracy in the same cell."""
    shared = ceiling_share(points)
    table = pd.DataFrame({"method": list(dict.fromkeys(shared["method"]))})
    for size in size_order(shared["train_subjects_per_class"]):
        part = shared[shared["train_subjects_per_class"] == size]
        for strength in sorted(part["strength"].unique()):
            cells = {}
            for r in part[part["strength"] == strength].itertuples():
                cell = fmt_interval(r.accuracy, r.accuracy_lo, r.accuracy_hi)
                if r.method != IDEAL and np.isfinite(r.share_of_ceiling):
                    cell += f" ({r.share_of_ceiling:.0%})"
                cells[r.method] = cell
            label = f"{size_label(size, part['people_per_class'].mean())}, {strength:g} SD"
            table[label] = [cells.get(m, "–") for m in table["method"]]
    return table


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
            style = {"color": "black", "linestyle": "--", "marker": "s"} if method == IDEAL else \
                {"color": f"C{i % 10}", "marker": "o"}  # one colour each; the ceiling black, dashed
            ax.errorbar(x, y, yerr=error, capsize=3, label=method, **style)
        ax.axhline(part["chance"].iloc[0], color="grey", linestyle=":", linewidth=1, label="chance")
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
    points = ceiling_share(points)
    out_dir = Path(out_dir)
    mde = mde_table(points)
    files = {"power": out_dir / "power.csv", "mde": out_dir / "mde.csv"}
    points.to_csv(files["power"], index=False)
    mde.to_csv(files["mde"], index=False)
    report.heading("Power curves and minimum detectable effect")
    report.text("Test accuracy against the simulated effect size (data.strength, in SD of each condition's measure "
                "on the source faces), per training size. Error bars: the pooled rows' 95% intervals (people-level, "
                "as in the sweep table). Minimum detectable effect: the smallest strength above 0 whose interval "
                "lies wholly above chance (1 / number of classes); each row had one test look per fold and repeat. "
                f"'{IDEAL}': linear discriminant analysis on the exact measures of each descriptor in the written "
                "photo (truth.csv), fitted on each job's training people and scored on its test people (the same "
                "splits): a ceiling that needs no image; in brackets, a method's accuracy as a share of it.")
    for (dataset, task), part in points.groupby(["dataset", "task"], sort=False):
        report.heading(f"{dataset} / {task}", level=3)
        own = mde[(mde["dataset"] == dataset) & (mde["task"] == task)]
        report.table(mde_display(own), caption=f"{dataset} / {task}: minimum detectable effect by training people "
                     f"per class (chance {own['chance'].iloc[0]:.2f})")
        if (part["method"] == IDEAL).any():
            report.table(ceiling_display(part), caption=f"{dataset} / {task}: accuracy [95% CI] by training people "
                         "per class and effect size, beside the ideal observer's ceiling (share of it)")
        slug = "".join(ch if ch.isalnum() else "_" for ch in f"{dataset}_{task}")
        png = save_figure(power_figure(part, f"{dataset} / {task}: power curves"),
                          out_dir / "figures" / f"power_{slug}.png", tight=True)
        files[f"power_{slug}"] = png
        report.figure(png, caption=f"{dataset} / {task}: accuracy against effect size")
    return files
