"""Evaluate a sweep: one table across runs in the paper's layout, with intervals, CV pooling and failures.

Rows are configurations × variants. A configuration is the run's composed config without its fold /
split-seed / path keys (facediag.evaluation.cv.IGNORED_KEYS): runs sharing it are folds or
repeats of one cross-validation and are pooled. The best row of each table (highest accuracy) is
marked; rows whose 95% interval overlaps the best row's are flagged "not clearly different". A run
that failed (FAILED file) or cannot be read is a failed row with its reason, never an error.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facediag.evaluation.curves import add_learning_curves
from facediag.evaluation.cv import FoldPredictions, PooledCV, configuration_key, pool_folds, trimmed_config
from facediag.evaluation.figures import RocCurve, RocInput, macro_roc, plot_roc_curves, roc_curves, roc_inputs
from facediag.evaluation.report import MISSING, Report, fmt_count, fmt_interval, fmt_number
from facediag.evaluation.runs import Run, RunDirError, find_run_dirs, get_dotted, load_run, read_config
from facediag.plots import plot_confusion_matrix, plot_roc
from facediag.results import metrics_for, score_columns

BEST, TIE, FAILED_ROW = "best", "tie", "failed"
NOTES = {BEST: "★ best", TIE: "not clearly different"}
BINARY_COLUMNS = ("precision", "sensitivity", "specificity", "f1", "auc")
IDENTITY_KEYS = ("data.name", "data.task", "backbone.name", "weights.name", "strategy.name")


@dataclass
class Entry:
    """A run dir found in the sweep: loaded (``run``) or not, with the failure reason when it failed."""

    path: Path
    config: dict[str, Any]
    run: Run | None = None
    error: str | None = None

    @property
    def key(self) -> str:
        return configuration_key(self.config)

    def describe(self) -> dict[str, Any]:
        if self.run is not None:
            return self.run.describe()
        strategy = get_dotted(self.config, "strategy.name")
        cnn = strategy != "dsift"
        return {
            "dataset": get_dotted(self.config, "data.name"),
            "task": get_dotted(self.config, "data.task"),
            "backbone": get_dotted(self.config, "backbone.name") if cnn else None,
            "weights": get_dotted(self.config, "weights.name") if cnn else None,
            "strategy": strategy,
            "fold": get_dotted(self.config, "data.fold"),
            "split_seed": get_dotted(self.config, "data.split_seed"),
        }


@dataclass
class Row:
    """One row of the paper-layout table: a configuration × variant (pooled over its folds when CV)."""

    entries: list[Entry]
    variant: str | None
    description: dict[str, Any]
    evaluation: str = ""
    setting: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    predictions: pd.DataFrame | None = None  # every test prediction behind the row (for ROC curves)
    cv: PooledCV | None = None
    status: str = "ok"
    reason: str = ""
    mark: str = ""

    @property
    def failed(self) -> bool:
        return self.status != "ok"

    @property
    def name(self) -> str:
        d = self.description
        parts = [d.get("backbone"), d.get("weights"), d.get("strategy")]
        text = "/".join(str(p) for p in parts if p)
        if self.variant and self.variant != d.get("strategy"):
            text += f" {self.variant}"
        return text + (f" [{self.setting}]" if self.setting else "")


@dataclass
class SweepResult:
    """What evaluate_sweep computed: report.csv's frame, the table rows, CV repeats and written files."""

    runs: pd.DataFrame
    rows: list[Row]
    cv: pd.DataFrame
    files: dict[str, Path] = field(default_factory=dict)


def config_id(entry: Entry) -> str:
    return hashlib.sha1(entry.key.encode()).hexdigest()[:8]


def load_entry(path: Path) -> Entry:
    """Load a run dir; a FAILED file or an unreadable run gives an Entry with ``error`` set."""
    try:
        run = load_run(path)
    except RunDirError as err:
        try:
            config = read_config(path)
        except RunDirError:
            config = {}
        return Entry(path, config, None, str(err))
    return Entry(path, run.config, run, run.failure_reason if run.failed else None)


# -- report.csv: one row per run × variant ----------------------------------------------------------------
def run_rows(entry: Entry) -> list[dict[str, Any]]:
    """report.csv rows of one run dir: one per variant, or a single failed row."""
    base = {"run_dir": str(entry.path), "config_id": config_id(entry), **entry.describe()}
    stored = (entry.run.stored_metrics or {}) if entry.run is not None else {}
    base.update(macs=stored.get("macs"), params=stored.get("params"))
    if entry.error is not None:
        return [{**base, "variant": None, "status": "failed", "reason": entry.error}]
    run = entry.run
    assert run is not None
    rows = []
    for variant in run.variants:
        part = run.predictions[run.predictions["variant"] == variant]
        try:
            m = metrics_for(part, run.classes, run.positive)
        except ValueError as err:
            rows.append({**base, "variant": variant, "status": "failed", "reason": f"variant {variant}: {err}"})
            continue
        rows.append(
            {
                **base,
                "variant": variant,
                "status": "ok",
                "reason": "",
                "classes": " ".join(run.classes),
                "positive": run.positive,
                "n_test": m["n"],
                "n_correct": m["n_correct"],
                "accuracy": m["accuracy"],
                "accuracy_lo": m["accuracy_ci"][0],
                "accuracy_hi": m["accuracy_ci"][1],
                **{k: m[k] for k in ("precision", "sensitivity", "specificity", "f1", "balanced_accuracy", "auc",
                                     "top3_error")},
                **{f"accuracy_{c}": m["per_class"][c]["accuracy"] for c in run.classes},
            }
        )
    return rows


# -- table rows: configurations × variants ------------------------------------------------------------
def _flatten(node: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(node, dict):
        flat: dict[str, str] = {}
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): str(node)}


def distinguishing_settings(entries: Sequence[Entry]) -> dict[str, str]:
    """For configurations that look alike (same dataset, task, backbone, weights, strategy): the keys where
    they differ, as ``key=value`` (config key → text; empty when the identity is unique)."""
    by_identity: dict[tuple, dict[str, dict[str, str]]] = {}
    for entry in entries:
        identity = tuple(str(get_dotted(entry.config, k)) for k in IDENTITY_KEYS)
        by_identity.setdefault(identity, {})[entry.key] = _flatten(trimmed_config(entry.config))
    settings: dict[str, str] = {}
    for configs in by_identity.values():
        if len(configs) < 2:
            continue
        keys = sorted({k for flat in configs.values() for k in flat})
        differing = [k for k in keys if len({flat.get(k) for flat in configs.values()}) > 1]
        for key, flat in configs.items():
            settings[key] = ", ".join(f"{k}={flat.get(k, MISSING)}" for k in differing)
    return settings


def _single_row(entry: Entry, variant: str) -> Row:
    run = entry.run
    assert run is not None
    part = run.predictions[(run.predictions["variant"] == variant) & (run.predictions["role"] == "test")]
    metrics = metrics_for(part, run.classes, run.positive)
    fold, seed, n_folds = run.setting("data.fold"), run.setting("data.split_seed"), run.setting("data.n_folds")
    if run.setting("data.split") == "kfold":
        evaluation = f"fold {fold} of {n_folds}, seed {seed}"
    else:
        evaluation = f"{run.setting('data.split') or 'single'} split, seed {seed}"
    return Row([entry], variant, run.describe(), evaluation, metrics=metrics, predictions=part)


def _pooled_row(entries: list[Entry], variant: str, n_failed: int) -> Row:
    first = entries[0].run
    assert first is not None
    folds = []
    for entry in entries:
        run = entry.run
        part = run.predictions[(run.predictions["variant"] == variant) & (run.predictions["role"] == "test")]
        folds.append(FoldPredictions(int(run.setting("data.fold", 0)), int(run.setting("data.split_seed", 0)),
                                     part, str(entry.path)))
    description = {**first.describe(), "fold": None, "split_seed": None}
    try:
        cv = pool_folds(folds, first.classes, first.positive)
    except ValueError as err:
        return Row(entries, variant, description, status="failed", reason=str(err))
    s = cv.summary
    kfold = first.setting("data.split") == "kfold"
    n_folds = int(first.setting("data.n_folds") or s["n_folds"]) if kfold else None
    evaluation = f"{n_folds}-fold CV" if kfold else "repeated split"
    evaluation += f" × {s['n_repeats']} repeat{'s' if s['n_repeats'] > 1 else ''}"
    if kfold:
        incomplete = [f"folds {present} of seed {seed}" for seed, present, count in
                      zip(cv.repeats["split_seed"], cv.repeats["folds"], cv.repeats["n_folds"], strict=True)
                      if count < n_folds]
        if incomplete:
            evaluation += f" (incomplete: only {'; '.join(incomplete)})"
    if n_failed:
        evaluation += f"; {n_failed} failed run{'s' if n_failed > 1 else ''} left out"
    metrics = {
        "n": s["n"],
        "accuracy": s["accuracy"],
        "accuracy_ci": s["accuracy_ci"],
        "accuracy_sd": s["accuracy_sd"],
        **{k: s[k] for k in ("precision", "sensitivity", "specificity", "f1", "balanced_accuracy", "auc")},
        "per_class": {c: {"accuracy": a} for c, a in s["per_class_accuracy"].items()},
    }
    predictions = pd.concat(list(cv.pooled.values()), ignore_index=True)
    return Row(entries, variant, description, evaluation, metrics=metrics, predictions=predictions, cv=cv)


def build_rows(entries: Sequence[Entry]) -> list[Row]:
    """Group runs by configuration, pool the folds of each, one row per configuration × variant."""
    settings = distinguishing_settings([e for e in entries if e.config])
    ok: dict[str, list[Entry]] = {}
    failed_by_key: dict[str, int] = {}
    rows: list[Row] = []
    for entry in entries:
        if entry.error is None:
            ok.setdefault(entry.key, []).append(entry)
        else:
            failed_by_key[entry.key] = failed_by_key.get(entry.key, 0) + 1
            rows.append(Row([entry], None, entry.describe(), status="failed", reason=entry.error,
                            setting=settings.get(entry.key, "") if entry.config else "",
                            evaluation=f"fold {entry.describe()['fold']}, seed {entry.describe()['split_seed']}"))
    for key, group in ok.items():
        variants = list(dict.fromkeys(v for e in group for v in e.run.variants))
        for variant in variants:
            members = [e for e in group if variant in e.run.variants]
            try:
                if len(members) == 1:
                    row = _single_row(members[0], variant)
                else:
                    row = _pooled_row(members, variant, failed_by_key.get(key, 0))
            except ValueError as err:
                row = Row(members, variant, members[0].describe(), status="failed", reason=str(err))
            row.setting = settings.get(key, "")
            rows.append(row)
    return rows


def table_group(row: Row) -> tuple[str, str, tuple[str, ...]]:
    """Rows are compared within one dataset / task / class list."""
    run = next((e.run for e in row.entries if e.run is not None and e.run.classes), None)
    classes = tuple(run.classes) if run is not None else ()
    return (str(row.description.get("dataset")), str(row.description.get("task")), classes)


def group_rows_by_table(rows: Sequence[Row]) -> dict[tuple[str, str, tuple[str, ...]], list[Row]]:
    """One table per dataset / task / class list; a failed row (classes unknown) joins its task's table."""
    groups: dict[tuple[str, str, tuple[str, ...]], list[Row]] = {}
    for row in sorted(rows, key=lambda r: r.failed):
        key = table_group(row)
        if not key[2]:
            key = next((k for k in groups if k[:2] == key[:2]), key)
        groups.setdefault(key, []).append(row)
    return groups


def mark_best(rows: Sequence[Row]) -> None:
    """Mark the best ok row (highest accuracy; ties: higher lower bound, then AUC) and the rows whose
    interval overlaps its interval."""
    candidates = [r for r in rows if not r.failed]
    if not candidates:
        return
    best = max(candidates, key=lambda r: (r.metrics["accuracy"], r.metrics["accuracy_ci"][0],
                                          r.metrics.get("auc") or -1.0))
    best_lo, best_hi = best.metrics["accuracy_ci"]
    for row in candidates:
        lo, hi = row.metrics["accuracy_ci"]
        row.mark = BEST if row is best else (TIE if lo <= best_hi and hi >= best_lo else "")


def _sort_key(row: Row) -> tuple:
    d = row.description
    return (row.failed, str(d.get("strategy")), str(d.get("backbone")), str(d.get("weights")), str(row.variant),
            row.setting)


def display_table(rows: Sequence[Row], classes: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    """The paper-layout table as display strings, and the CSS class of every row."""
    binary = len(classes) == 2
    with_sd = any(r.metrics.get("accuracy_sd") is not None for r in rows)
    with_setting = any(r.setting for r in rows)
    records, css = [], []
    for row in rows:
        d, m = row.description, row.metrics
        record: dict[str, Any] = {
            "backbone": d.get("backbone") or MISSING,
            "weights": d.get("weights") or MISSING,
            "strategy": d.get("strategy") or MISSING,
            "variant": row.variant or MISSING,
        }
        if with_setting:
            record["setting"] = row.setting or MISSING
        stored = (row.entries[0].run.stored_metrics or {}) if row.entries[0].run is not None else {}
        record.update(evaluation=row.evaluation or MISSING, MACs=fmt_count(stored.get("macs")),
                      n=m.get("n", MISSING))
        if row.failed:
            record["accuracy [95% CI]"] = MISSING
        else:
            record["accuracy [95% CI]"] = fmt_interval(m["accuracy"], *m["accuracy_ci"])
        if with_sd:
            record["SD over repeats"] = fmt_number(m.get("accuracy_sd"))
        if binary:
            for key in BINARY_COLUMNS:
                record["AUC" if key == "auc" else ("F1" if key == "f1" else key)] = fmt_number(m.get(key))
        else:
            for c in classes:
                record[f"accuracy {c}"] = fmt_number(m.get("per_class", {}).get(c, {}).get("accuracy"))
        record["note"] = f"FAILED: {row.reason}" if row.failed else NOTES.get(row.mark, "")
        records.append(record)
        css.append(FAILED_ROW if row.failed else row.mark)
    return pd.DataFrame(records), css


def row_curve(row: Row, classes: Sequence[str], positive: str | None) -> RocInput | RocCurve | None:
    """A row's ROC over its test predictions: binary, the positive class's (label, y, score) for
    facediag.plots.plot_roc; multiclass, the macro-averaged one-vs-rest curve."""
    if row.predictions is None or row.predictions.empty:
        return None
    index = {c: i for i, c in enumerate(classes)}
    y_true = row.predictions["label"].map(index).to_numpy()
    scores = row.predictions[score_columns(classes)].to_numpy()
    label = ("★ " if row.mark == BEST else "") + row.name
    if len(classes) == 2:
        _, is_positive, ranking = roc_inputs(y_true, scores, classes, positive)[0]
        return (label, is_positive, ranking)
    return macro_roc(roc_curves(y_true, scores, classes, positive), label)


def cv_frame(rows: Sequence[Row]) -> pd.DataFrame:
    """cv.csv: one row per pooled configuration × variant × split seed."""
    frames = []
    for row in rows:
        if row.cv is None:
            continue
        d = row.description
        frames.append(row.cv.repeats.assign(
            config_id=config_id(row.entries[0]), dataset=d.get("dataset"), task=d.get("task"),
            backbone=d.get("backbone"), weights=d.get("weights"), strategy=d.get("strategy"), variant=row.variant,
            setting=row.setting, mean_accuracy=row.cv.mean_accuracy, sd_accuracy=row.cv.sd_accuracy,
        ))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _cv_display(cv: PooledCV) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "split seed": cv.repeats["split_seed"],
            "folds": cv.repeats["folds"],
            "n": cv.repeats["n"],
            "correct": cv.repeats["n_correct"],
            "pooled accuracy [95% CI]": [fmt_interval(a, lo, hi) for a, lo, hi in
                                         zip(cv.repeats["accuracy"], cv.repeats["accuracy_lo"],
                                             cv.repeats["accuracy_hi"], strict=True)],
            "sensitivity": [fmt_number(v) for v in cv.repeats["sensitivity"]],
            "specificity": [fmt_number(v) for v in cv.repeats["specificity"]],
            "AUC": [fmt_number(v) for v in cv.repeats["auc"]],
        }
    )
    sd = cv.sd_accuracy
    summary = f"{cv.mean_accuracy:.3f} ± {sd:.3f} (mean ± SD)" if sd is not None else ""
    if sd is None:
        return frame
    total = {"split seed": "all repeats", "folds": "", "n": "", "correct": "", "pooled accuracy [95% CI]": summary,
             "sensitivity": "", "specificity": "", "AUC": ""}
    return pd.concat([frame.astype(object), pd.DataFrame([total])], ignore_index=True)


def _slug(*parts: Any) -> str:
    text = "_".join(str(p) for p in parts if p not in (None, ""))
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in text)[:80]


def evaluate_sweep(spec: str | Path | Sequence[str | Path], out_dir: str | Path | None = None) -> SweepResult:
    """Find the run dirs of ``spec`` (a dir, a glob or a list), build the tables; with ``out_dir`` write
    report.md, report.csv (one row per run × variant), report.html, cv.csv and figures/ there."""
    entries = [load_entry(path) for path in find_run_dirs(spec)]
    runs = pd.DataFrame([r for e in entries for r in run_rows(e)])
    rows = build_rows(entries)
    groups = group_rows_by_table(rows)
    for group_rows in groups.values():
        mark_best(group_rows)
        group_rows.sort(key=_sort_key)
    result = SweepResult(runs, [r for g in groups.values() for r in g], cv_frame(rows))
    if out_dir is None:
        return result
    out_dir = Path(out_dir)
    figures = out_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    n_failed = sum(e.error is not None for e in entries)
    report = Report("Sweep evaluation")
    report.text(f"{len(entries)} run dir(s) ({n_failed} failed) found under: "
                + ", ".join(str(s) for s in ([spec] if isinstance(spec, (str, Path)) else spec))
                + ". Every number is recomputed from the runs' predictions.csv (test role).")
    report.text("Accuracy: Wilson 95% interval. ★ best = highest accuracy in the table; 'not clearly "
                "different' = its interval overlaps the best row's (a conservative check, not a test). CV rows "
                "pool the out-of-fold test predictions of each repeat; with several repeats the accuracy is "
                "the mean over repeats and its interval uses n = images per repeat.")
    for (dataset, task, classes), group_rows in groups.items():
        classes = list(classes)
        positive = next((e.run.positive for r in group_rows for e in r.entries if e.run is not None
                         and e.run.classes), None)
        heading = f"{dataset} / {task}"
        if classes:
            heading += f" (classes {', '.join(classes)}" + (f"; positive {positive})" if len(classes) == 2 else ")")
        report.heading(heading)
        table, css = display_table(group_rows, classes)
        report.table(table, caption=f"{dataset} / {task}: test results", row_classes=css)
        if classes:
            curves = [c for c in (row_curve(r, classes, positive) for r in group_rows if not r.failed) if c]
            if curves:
                kind = f"positive class {positive}" if len(classes) == 2 else "macro one vs rest"
                draw = plot_roc if len(classes) == 2 else plot_roc_curves
                png = draw(curves, figures / f"roc_{_slug(dataset, task)}.png", f"{dataset} / {task}: ROC ({kind})")
                report.figure(png, caption=f"{dataset} / {task}: ROC curves ({kind}); ★ = best row")
    pooled = [r for r in result.rows if r.cv is not None]
    if pooled:
        report.heading("Cross-validation")
        for i, row in enumerate(pooled):
            report.heading(f"{row.description.get('task')}: {row.name}", level=3)
            report.table(_cv_display(row.cv), caption=f"{row.name}: out-of-fold predictions pooled per repeat")
            # a class absent from every fold has a NaN row (no rate): drawn as zeros
            png = plot_confusion_matrix(np.nan_to_num(row.cv.mean_confusion), row.cv.classes,
                                        figures / f"cv_confusion_{i}_{_slug(row.name)}.png",
                                        title=f"{row.name}\nfold-averaged, row-normalised", normalize=True)
            report.figure(png, caption=f"{row.name}: confusion matrix, row-normalised per fold, averaged over "
                          f"{len(row.cv.folds)} folds (rows = true class)")
    curve_files = add_learning_curves(result.rows, report, out_dir)  # sweeps over data.train_subjects_per_class
    failed = [e for e in entries if e.error is not None]
    if failed:
        report.heading("Failed runs")
        report.table(pd.DataFrame([{"run dir": str(e.path), "reason": e.error} for e in failed]),
                     row_classes=[FAILED_ROW] * len(failed))
    runs.to_csv(out_dir / "report.csv", index=False)
    if not result.cv.empty:
        result.cv.to_csv(out_dir / "cv.csv", index=False)
    result.files = {**report.write(out_dir), "csv": out_dir / "report.csv", **curve_files}
    return result
