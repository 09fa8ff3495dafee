"""Evaluate a sweep: one table across runs in the paper's layout, with intervals, CV pooling and failures.

Rows are configurations × variants. A configuration is the run's composed config without its fold /
split-seed / path keys (facediag.evaluation.cv.IGNORED_KEYS): runs sharing it are folds or
repeats of one cross-validation and are pooled. Intervals are person-level (facediag.scoring.stats). The row to
report is chosen on validation, never on test, and every other row is compared with it on the same test
images (McNemar's exact test per person, paired bootstrap interval of the accuracy difference, Holm
adjustment; facediag.evaluation.compare). Optuna trials are reduced to the trial chosen on validation. A
run that failed (FAILED file) or cannot be read is a failed row with its reason, never an error.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facediag.evaluation.compare import ALPHA, choose_on_validation, compare_rows, row_penalty, validation_value
from facediag.evaluation.curves import add_learning_curves
from facediag.evaluation.cv import FoldPredictions, PooledCV, configuration_key, pool_folds, trimmed_config
from facediag.evaluation.figures import RocCurve, RocInput, macro_roc, roc_curves, roc_inputs
from facediag.evaluation.methods import methods_paragraph
from facediag.evaluation.power import add_power_curves
from facediag.evaluation.report import MISSING, Report, fmt_count, fmt_interval, fmt_number, fmt_with_ci
from facediag.evaluation.runs import Run, RunDirError, find_run_dirs, get_dotted, load_run, read_config
from facediag.evaluation.single import stored_permutation
from facediag.scoring.controls import CONTROLS, compare, control_predictions, run_controls_of
from facediag.scoring.permutation import PermutationResult
from facediag.scoring.plots import plot_confusion_matrix, plot_roc
from facediag.scoring.results import metrics_for, targets_and_scores
from facediag.scoring.stats import N_RESAMPLES, PairedComparison
from facediag.strategies.registry import uses_backbone

BEST, TIE, FAILED_ROW = "best", "tie", "failed"  # CSS classes: the chosen row, rows not clearly different
CHOSEN_NOTE = "★ chosen on validation"
BINARY_COLUMNS = ("precision", "sensitivity", "specificity", "f1", "auc")
#: what a table row is named by (Entry.describe(); a fused run's backbone names its sources)
IDENTITY_FIELDS = ("dataset", "task", "backbone", "weights", "strategy")


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

    @cached_property
    def permutation(self) -> dict[str, PermutationResult]:
        """The run's permutation test per variant, recomputed from its files once (empty without one)."""
        return stored_permutation(self.run) if self.run is not None else {}

    def describe(self) -> dict[str, Any]:
        if self.run is not None:
            return self.run.describe()
        strategy = get_dotted(self.config, "strategy.name")
        cnn = uses_backbone(get_dotted(self.config, "strategy", {}) or {})
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
    val_accuracy: float | None = None  # the selection score (facediag.evaluation.compare)
    comparison: PairedComparison | None = None  # against the chosen row of its table
    p_holm: float | None = None
    n_paired: int = 0
    against: Row | None = None  # the chosen row this row was compared with
    trials: list[Row] = field(default_factory=list)  # Optuna trials this row was chosen from (itself included)

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
TRIAL_NOT_CHOSEN = "Optuna trial not chosen on validation: test metrics withheld (see the chosen trial)"


def run_rows(entry: Entry, test: bool = True) -> list[dict[str, Any]]:
    """report.csv rows of one run dir: one per variant, or a single failed row. ``test=False`` (an Optuna trial
    not chosen on validation) keeps the validation score and leaves the test metrics out."""
    base = {"run_dir": str(entry.path), "config_id": config_id(entry), **entry.describe()}
    stored = (entry.run.stored_metrics or {}) if entry.run is not None else {}
    base.update(macs=stored.get("macs"), params=stored.get("params"), val_score=stored.get("val_score"))
    if entry.error is not None:
        return [{**base, "variant": None, "status": "failed", "reason": entry.error}]
    run = entry.run
    assert run is not None
    if not test:
        return [{**base, "variant": variant, "status": "ok", "reason": TRIAL_NOT_CHOSEN} for variant in run.variants]
    rows = []
    controls = run_controls_of(entry.path, run.predictions, run.classes, run.positive)
    permutation = entry.permutation
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
                "accuracy_ci_method": m["accuracy_ci_method"],
                **{k: m[k] for k in ("precision", "sensitivity", "specificity", "f1", "balanced_accuracy", "auc",
                                     "top3_error")},
                **{f"accuracy_{c}": m["per_class"][c]["accuracy"] for c in run.classes},
                **control_columns(controls, variant),
                **permutation_columns(permutation.get(variant)),
            }
        )
    return rows


def permutation_columns(result: PermutationResult | None) -> dict[str, Any]:
    """report.csv columns of a variant's whole-pipeline permutation test (``permutations=N``): its p-value,
    the number of permutations and the mean accuracy on permuted labels; none without a test."""
    if result is None:
        return {}
    return {"permutation_p": result.p_value, "permutations": result.n_permutations,
            "permutation_null_mean": float(np.mean(result.null))}


def row_permutation(row: Row) -> str:
    """The table's permutation cell: a run's p-value (with its count), one per fold for a pooled row."""
    results = [e.permutation.get(row.variant) for e in row.entries if e.run is not None]
    found = [r for r in results if r is not None]
    if not found:
        return MISSING
    text = ", ".join(f"{r.p_value:.3g}" for r in found)
    counts = sorted({r.n_permutations for r in found})
    per = "per fold " if len(row.entries) > 1 else ""
    missing = f"; {len(results) - len(found)} fold(s) without" if len(found) < len(results) else ""
    return f"p = {per}{text} ({'/'.join(map(str, counts))} permutations{missing})"


def control_columns(controls: dict[str, dict[str, Any]], variant: str | None) -> dict[str, Any]:
    """report.csv columns of a variant's controls: ``<control>_accuracy``, ``_lo``, ``_hi``, ``_above_chance`` and
    the paired difference method minus control ``<control>_gap``, ``_gap_lo``, ``_gap_hi``."""
    columns: dict[str, Any] = {}
    for name, by_variant in controls.items():
        c = by_variant.get(variant)
        if c is not None:
            columns.update({f"{name}_accuracy": c["accuracy"], f"{name}_lo": c["accuracy_ci"][0],
                            f"{name}_hi": c["accuracy_ci"][1], f"{name}_above_chance": c["above_chance"],
                            f"{name}_gap": c["face_gap"], f"{name}_gap_lo": c["face_gap_ci"][0],
                            f"{name}_gap_hi": c["face_gap_ci"][1]})
    return columns


def row_controls(row: Row) -> dict[str, dict[str, Any]]:
    """The controls of a table row (every fold's controls/<name>/predictions.csv pooled), against the row's own
    pooled predictions."""
    runs = [e for e in row.entries if e.run is not None]
    if row.failed or row.predictions is None or not runs:
        return {}
    parts: dict[str, list[pd.DataFrame]] = {}
    for entry in runs:
        for name, frame in control_predictions(entry.path).items():
            parts.setdefault(name, []).append(frame.assign(split_seed=entry.run.setting("data.split_seed")))
    first = runs[0].run
    return {name: compare(row.predictions, pd.concat(frames, ignore_index=True), first.classes, first.positive)
            for name, frames in parts.items()}


# -- table rows: configurations × variants ------------------------------------------------------------
def _flatten(node: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(node, dict):
        flat: dict[str, str] = {}
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): str(node)}


def distinguishing_settings(entries: Sequence[Entry]) -> dict[str, str]:
    """For configurations whose rows would read alike (same dataset, task, backbone, weights and strategy as the
    table names them: a fused run by its sources): the keys where they differ, as ``key=value`` (config key →
    text; empty when the name is unique)."""
    by_key: dict[str, list[Entry]] = {}
    for entry in entries:
        by_key.setdefault(entry.key, []).append(entry)
    by_identity: dict[tuple, dict[str, dict[str, str]]] = {}
    for key, group in by_key.items():
        shown = next((e for e in group if e.run is not None), group[0]).describe()  # a failed fold: its config
        identity = tuple(str(shown.get(k)) for k in IDENTITY_FIELDS)
        by_identity.setdefault(identity, {})[key] = _flatten(trimmed_config(group[0].config))
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
    return Row([entry], variant, run.describe(), evaluation, metrics=metrics, predictions=part.assign(split_seed=seed))


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
        "accuracy_sd": s["accuracy_sd"],
        **{k: s[k] for k in ("precision", "sensitivity", "specificity", "f1", "balanced_accuracy", "auc")},
        **{k: s[k] for k in s if k.endswith("_ci") or k in ("ci_methods", "accuracy_ci_method")},
        "per_class": {c: {"accuracy": a} for c, a in s["per_class_accuracy"].items()},
    }
    predictions = pd.concat([f.assign(split_seed=seed) for seed, f in cv.pooled.items()], ignore_index=True)
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


def is_optuna_trial(entry: Entry) -> bool:
    """Whether the run is a trial of an Optuna sweep (its .hydra/hydra.yaml names the Optuna sweeper)."""
    hydra = entry.path / ".hydra" / "hydra.yaml"
    return hydra.is_file() and "OptunaSweeper" in hydra.read_text(errors="replace")


def reduce_trials(rows: Sequence[Row]) -> list[Row]:
    """Optuna trials of one method (same identity and variant) → the trial with the best val_score (what
    Optuna maximised), holding every trial in ``trials``; other rows unchanged."""
    kept: list[Row] = []
    by_method: dict[tuple, list[Row]] = {}
    for row in rows:
        if not row.failed and all(is_optuna_trial(e) for e in row.entries):
            identity = (*(str(row.description.get(k)) for k in ("backbone", "weights", "strategy")), row.variant)
            by_method.setdefault(identity, []).append(row)
        else:
            kept.append(row)
    for trials in by_method.values():
        chosen = choose_on_validation(trials, key="val_score") or trials[0]
        chosen.trials = list(trials)
        kept.append(chosen)
    return kept


def mark_chosen(rows: Sequence[Row]) -> Row | None:
    """Choose the row to report on validation, compare every other row with it (paired, Holm) and mark the
    chosen row (BEST) and the rows not clearly different from it (TIE). Returns the chosen row."""
    for row in rows:
        row.val_accuracy = None if row.failed else validation_value(row)
    chosen = choose_on_validation(rows)
    if chosen is None:
        return None
    compare_rows(rows, chosen)
    for row in rows:
        row.against = None if row.failed or row is chosen else chosen
        if row is chosen:
            row.mark = BEST
        elif row.p_holm is not None and row.p_holm >= ALPHA:
            row.mark = TIE
    return chosen


def row_note(row: Row) -> str:
    """The table's note: chosen, not clearly different / worse / better than the chosen row, why no test."""
    if row.failed:
        return f"FAILED: {row.reason}"
    if row.mark == BEST:
        note = CHOSEN_NOTE
        return note + (f" (best val_score of {len(row.trials)} Optuna trials)" if row.trials else "")
    notes = []
    if row.comparison is None:
        if row.against is not None:
            notes.append("not paired (no test image in common with the chosen row)")
    elif row.p_holm is not None:
        if row.p_holm >= ALPHA:
            notes.append("not clearly different")
        else:
            notes.append("worse than chosen" if row.comparison.accuracy_difference < 0 else
                         "better than chosen on test")
    if row.val_accuracy is None:
        notes.append("no validation accuracy: not eligible")
    return "; ".join(n for n in notes if n)


def _sort_key(row: Row) -> tuple:
    d = row.description
    return (row.failed, str(d.get("strategy")), str(d.get("backbone")), str(d.get("weights")), str(row.variant),
            row.setting)


def display_table(rows: Sequence[Row], classes: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    """The paper-layout table as display strings, and the CSS class of every row."""
    binary = len(classes) == 2
    with_sd = any(r.metrics.get("accuracy_sd") is not None for r in rows)
    with_setting = any(r.setting for r in rows)
    with_controls = any(control_predictions(e.path) for r in rows for e in r.entries if e.run is not None)
    with_permutation = any(e.run is not None and (e.run.stored_metrics or {}).get("permutation")
                           for r in rows for e in r.entries)
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
                      n=m.get("n", MISSING), people=_people(row))
        if with_controls:
            record["val accuracy"] = fmt_number(None if row.failed else validation_value(row, penalised=False))
            record["control penalty"] = fmt_number(row_penalty(row))
            record["selection score"] = fmt_number(row.val_accuracy)
        else:
            record["val accuracy"] = fmt_number(row.val_accuracy)
        record["accuracy [95% CI]"] = MISSING if row.failed else fmt_with_ci(m, "accuracy")
        if with_sd:
            record["SD over repeats"] = fmt_number(m.get("accuracy_sd"))
        if binary:
            for key in BINARY_COLUMNS:
                name = {"auc": "AUC", "f1": "F1"}.get(key, key)
                if key in ("sensitivity", "specificity", "auc"):
                    record[f"{name} [95% CI]"] = fmt_with_ci(m, key)
                else:
                    record[name] = fmt_number(m.get(key))
        else:
            record["balanced accuracy [95% CI]"] = fmt_with_ci(m, "balanced_accuracy")
            record["AUC [95% CI]"] = fmt_with_ci(m, "auc")
            for c in classes:
                record[f"accuracy {c}"] = fmt_number(m.get("per_class", {}).get(c, {}).get("accuracy"))
        record["interval"] = m.get("accuracy_ci_method") or MISSING
        if with_controls:
            controls = row_controls(row)
            for name in CONTROLS:
                c = controls.get(name, {}).get(row.variant)
                record[f"{name} control [95% CI]"] = MISSING if c is None else (
                    fmt_interval(c["accuracy"], *c["accuracy_ci"]) + (" ⚠ above chance" if c["above_chance"] else ""))
            c = controls.get("face_blind", {}).get(row.variant)
            record["method − face_blind [95% CI]"] = MISSING if c is None else fmt_interval(c["face_gap"],
                                                                                           *c["face_gap_ci"])
        if with_permutation:
            record["permutation test"] = row_permutation(row)
        comparison = row.comparison
        record["Δ accuracy vs chosen [95% CI]"] = MISSING if comparison is None else fmt_interval(
            comparison.accuracy_difference, *comparison.difference_ci)
        record["McNemar p (Holm)"] = MISSING if comparison is None else (
            f"{fmt_p(comparison.p_value)} ({fmt_p(row.p_holm)}); {comparison.n_a_better}:{comparison.n_b_better} "
            f"of {comparison.n_units} {'people' if comparison.unit == 'person' else 'images'}")
        record["note"] = row_note(row)
        records.append(record)
        css.append(FAILED_ROW if row.failed else row.mark)
    return pd.DataFrame(records), css


def comparison_frame(rows: Sequence[Row]) -> pd.DataFrame:
    """The comparison columns of one results table as numbers (``comparison_<task>.csv``), one row per table
    row in the table's order: validation and test accuracy, the difference from the chosen row with its paired
    person-bootstrap 95% interval, McNemar's p raw and Holm-adjusted, and the chosen flag."""
    records = []
    for row in rows:
        d, m, c = row.description, row.metrics, row.comparison
        low, high = m.get("accuracy_ci") or (None, None)
        records.append({
            "dataset": d.get("dataset"), "task": d.get("task"), "backbone": d.get("backbone"),
            "weights": d.get("weights"), "strategy": d.get("strategy"), "variant": row.variant,
            "setting": row.setting or None, "chosen": row.mark == BEST, "status": row.status,
            "val_accuracy": row.val_accuracy, "accuracy": None if row.failed else m.get("accuracy"),
            "accuracy_low": None if row.failed else low, "accuracy_high": None if row.failed else high,
            "difference_vs_chosen": None if c is None else c.accuracy_difference,
            "difference_low": None if c is None else c.difference_ci[0],
            "difference_high": None if c is None else c.difference_ci[1],
            "mcnemar_p": None if c is None else c.p_value, "mcnemar_p_holm": row.p_holm,
            "row_better": None if c is None else c.n_a_better, "chosen_better": None if c is None else c.n_b_better,
            "units": None if c is None else c.n_units, "unit": None if c is None else c.unit,
            "n_paired": row.n_paired, "note": row_note(row),
        })  # fmt: skip
    frame = pd.DataFrame(records)
    counts = ["row_better", "chosen_better", "units", "n_paired"]
    frame[counts] = frame[counts].astype("Int64")  # whole numbers in the CSV, empty where not compared
    return frame


def comparison_names(keys: Sequence[tuple]) -> dict[tuple, str]:
    """``comparison_<task>.csv`` per table (dataset, task, classes); ``comparison_<dataset>_<task>.csv`` where
    two tables share a task name."""
    tasks = [key[1] for key in keys]
    return {key: f"comparison_{_slug(key[1]) if tasks.count(key[1]) == 1 else _slug(key[0], key[1])}.csv"
            for key in keys}  # fmt: skip


def fmt_p(p: float | None) -> str:
    """A p-value: 3 significant digits, '<0.001' below 0.001."""
    if p is None:
        return MISSING
    return "<0.001" if p < 0.001 else f"{p:.3g}"


def _people(row: Row) -> Any:
    frame = row.predictions
    if row.failed or frame is None or "subject" not in frame.columns:
        return MISSING
    return int(frame["subject"].nunique())


def row_curve(row: Row, classes: Sequence[str], positive: str | None) -> RocInput | RocCurve | None:
    """A row's ROC over its test predictions: binary, the positive class's (label, y, score) for
    facediag.scoring.plots.plot_roc; multiclass, the macro-averaged one-vs-rest curve."""
    if row.predictions is None or row.predictions.empty:
        return None
    y_true, scores = targets_and_scores(row.predictions, classes)
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


HOW_TO_READ = (
    "How to read the tables. ★ marks the row to report: chosen by its validation accuracy (val accuracy: "
    "person-grouped CV on the training part for DTL2 / DSIFT, the validation split for DTL1), never by a test "
    "number; its test accuracy is the result. Every 95% interval is person-level: a cluster bootstrap over "
    f"people ({N_RESAMPLES} resamples, seeded) when a person has several test images, Wilson with one image "
    "per person (column 'interval'). Each other row is compared with the chosen row on the same test images: "
    "Δ accuracy (row − chosen) with a paired person-bootstrap 95% interval, and McNemar's exact test on the "
    "people the two rows classify differently (row better : chosen better, of all people; a person counts for "
    "the row whose share of correct images is higher), p-values Holm-adjusted over the rows of the table (in "
    "brackets). 'not clearly different' = Holm-adjusted p >= 0.05. CV rows pool the out-of-fold test "
    "predictions of each repeat (every person tested once per repeat); with several repeats the metrics are "
    "means over repeats. Precision, sensitivity, specificity and F1 follow scikit-learn (zero_division=0: a "
    "class never predicted has precision 0; macro averages over the classes that occur or are predicted)."
)


def trials_table(row: Row) -> pd.DataFrame:
    """The Optuna trials a row was chosen from: setting, val_score and validation accuracy (no test metrics)."""
    return pd.DataFrame([
        {"trial": str(t.entries[0].path.name), "setting": t.setting or MISSING,
         "val_score (optimised)": fmt_number(validation_value(t, "val_score")),
         "val accuracy": fmt_number(validation_value(t)), "chosen": "★" if t is row else ""}
        for t in row.trials
    ])


def _slug(*parts: Any) -> str:
    text = "_".join(str(p) for p in parts if p not in (None, ""))
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in text)[:80]


def evaluate_sweep(spec: str | Path | Sequence[str | Path], out_dir: str | Path | None = None) -> SweepResult:
    """Find the run dirs of ``spec`` (a dir, a glob or a list), build the tables; with ``out_dir`` write
    report.md, report.csv (one row per run × variant; test metrics only for the Optuna trial chosen on validation;
    ``chosen``: the runs of each table's row chosen on validation), report.html, cv.csv and figures/ there."""
    entries = [load_entry(path) for path in find_run_dirs(spec)]
    rows = build_rows(entries)
    groups = {key: reduce_trials(group_rows) for key, group_rows in group_rows_by_table(rows).items()}
    for group_rows in groups.values():
        mark_chosen(group_rows)
        group_rows.sort(key=_sort_key)
    # a test score is reported once per Optuna search: the other trials' run dirs keep their val_score only
    withheld = {e.path for g in groups.values() for row in g for t in row.trials if t is not row for e in t.entries}
    runs = pd.DataFrame([r for e in entries for r in run_rows(e, test=e.path not in withheld)])
    chosen = {(str(e.path), row.variant) for g in groups.values() for row in g if row.mark == BEST for e in row.entries}
    if not runs.empty:
        runs["chosen"] = [(d, v) in chosen for d, v in zip(runs["run_dir"], runs["variant"], strict=True)]
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
    report.text(HOW_TO_READ)
    comparison_files = comparison_names(list(groups))
    for (dataset, task, classes), group_rows in groups.items():
        classes = list(classes)
        positive = next((e.run.positive for r in group_rows for e in r.entries if e.run is not None
                         and e.run.classes), None)
        heading = f"{dataset} / {task}"
        if classes:
            heading += f" (classes {', '.join(classes)}" + (f"; positive {positive})" if len(classes) == 2 else ")")
        report.heading(heading)
        report.text(methods_paragraph(group_rows, classes, positive))
        table, css = display_table(group_rows, classes)
        report.table(table, caption=f"{dataset} / {task}: test results; ★ = chosen on validation", row_classes=css)
        csv_name = comparison_files[(dataset, task, tuple(classes))]
        comparison_frame(group_rows).to_csv(out_dir / csv_name, index=False)
        report.text(f"The comparison columns as numbers: {csv_name}.")
        for row in group_rows:
            if row.trials:
                report.table(trials_table(row), caption=f"{row.name}: Optuna trials (validation only; the test "
                             "score is shown once, for the chosen trial, in the table above)")
        if classes:
            curves = [c for c in (row_curve(r, classes, positive) for r in group_rows if not r.failed) if c]
            if curves:
                kind = f"positive class {positive}" if len(classes) == 2 else "macro one vs rest"
                png = plot_roc(curves, figures / f"roc_{_slug(dataset, task)}.png", f"{dataset} / {task}: ROC ({kind})")
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
    curve_files |= add_power_curves(result.rows, report, out_dir)  # sweeps over simulated data.strength
    failed = [e for e in entries if e.error is not None]
    if failed:
        report.heading("Failed runs")
        report.table(pd.DataFrame([{"run dir": str(e.path), "reason": e.error} for e in failed]),
                     row_classes=[FAILED_ROW] * len(failed))
    runs.to_csv(out_dir / "report.csv", index=False)
    if not result.cv.empty:
        result.cv.to_csv(out_dir / "cv.csv", index=False)
    result.files = {**report.write(out_dir), "csv": out_dir / "report.csv", **curve_files,
                    **{name: out_dir / name for name in comparison_files.values()}}  # fmt: skip
    return result
