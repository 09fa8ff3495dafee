"""Evaluate one run: recompute every metric from its predictions, write metrics.json, figures and a report."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facediag.evaluation.figures import roc_inputs
from facediag.evaluation.report import MISSING, Report, fmt_count, fmt_interval, fmt_number, fmt_with_ci
from facediag.evaluation.runs import Run, RunDirError, load_run
from facediag.evaluation.subgroups import SMALL_N, subgroup_table
from facediag.scoring.controls import controls_table, run_controls_of
from facediag.scoring.permutation import PermutationResult, permutation_of_run
from facediag.scoring.plots import plot_confusion_matrix, plot_roc
from facediag.scoring.results import summarize, targets_and_scores, to_json

TEST = "test"
MAX_LISTED = 30  # images listed by name in the "not predicted" section


def _age_bands(run: Run) -> dict[str, list[list[float]]]:
    bands = run.setting("data.age_bands")
    ok = isinstance(bands, list) and all(isinstance(b, list) and len(b) == 2 for b in bands)
    return {"age": bands} if ok and bands else {}


def recompute_metrics(run: Run) -> dict[str, Any]:
    """metrics.json content recomputed from the run's test predictions (config keys from the run)."""
    test = run.predictions[run.predictions["role"] == TEST]
    if test.empty:
        roles = sorted(set(run.predictions["role"]))
        raise RunDirError(f"{run.path}: predictions have no '{TEST}' rows (roles: {roles})")
    summary = summarize(test, run.classes, run.positive, run.info())
    for variant in summary["variants"].values():
        variant["n_test"] = variant["n"]
    summary["n_test"] = summary["variants"][summary["variant"]]["n"]
    summary["source_run"] = str(run.path)
    summary["recomputed_from"] = "predictions.csv (test role)"
    return summary


def stored_differences(run: Run, summary: dict[str, Any]) -> list[str]:
    """Where the run's own metrics.json disagrees with the recomputed numbers (should be never).

    Counts (accuracy, confusion matrix) must match exactly; rates computed from scores (AUC, F1, ...) to 1e-12.
    """
    stored = (run.stored_metrics or {}).get("variants") or {}
    notes = []
    for name, metrics in summary["variants"].items():
        if name not in stored:
            notes.append(f"variant {name}: not in the run's metrics.json")
            continue
        for key in ("accuracy", "n", "confusion_matrix"):
            if stored[name].get(key) != metrics[key]:
                notes.append(f"variant {name}: {key} stored {stored[name].get(key)} vs recomputed {metrics[key]}")
        for key in ("precision", "sensitivity", "specificity", "f1", "balanced_accuracy", "auc"):
            old, new = stored[name].get(key), metrics.get(key)
            if (old is None) != (new is None) or (old is not None and not math.isclose(old, new, abs_tol=1e-12)):
                notes.append(f"variant {name}: {key} stored {old} vs recomputed {new}")
    return notes


def missing_predictions(run: Run, variant: str) -> pd.DataFrame:
    """Test images of split.csv without a prediction (no face found, unreadable, ...), with the reason."""
    if run.split is None:
        return pd.DataFrame(columns=["path", "label", "reason"])
    predicted = set(run.predictions.loc[run.predictions["variant"] == variant, "path"])
    wanted = run.split[run.split["role"] == TEST]
    missing = wanted[~wanted["path"].astype(str).isin(predicted)][["path", "label"]].copy()
    reasons: dict[str, str] = {}
    report_file = run.path / "preprocess_report.csv"
    if report_file.is_file() and not missing.empty:
        report = pd.read_csv(report_file)
        for _, row in report.iterrows():
            parts = [str(row.get(k)) for k in ("status", "reason") if k in row and pd.notna(row.get(k))]
            reasons[str(row["path"])] = ": ".join(parts)
    missing["reason"] = [reasons.get(str(p), "no prediction") for p in missing["path"]]
    return missing.reset_index(drop=True)


def _info_table(summary: dict[str, Any]) -> pd.DataFrame:
    rows = [
        ("dataset", summary.get("dataset")),
        ("task", summary.get("task")),
        ("classes", ", ".join(summary["classes"])),
        ("positive class", summary.get("positive")),
        ("backbone", summary.get("backbone")),
        ("weights", summary.get("weights")),
        ("strategy", summary.get("strategy")),
        ("fold", summary.get("fold")),
        ("split seed", summary.get("split_seed")),
        ("images train / val / test", f"{summary.get('n_train')} / {summary.get('n_val')} / {summary.get('n_test')}"),
        ("MACs", fmt_count(summary.get("macs"))),
        ("parameters", fmt_count(summary.get("params"))),
    ]
    return pd.DataFrame([(k, MISSING if v is None else v) for k, v in rows], columns=["setting", "value"])


def _metrics_table(summary: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for name, m in summary["variants"].items():
        row = {
            "variant": name,
            "n": m["n"],
            "correct": m["n_correct"],
            "accuracy [95% CI]": fmt_with_ci(m, "accuracy"),
            "precision": fmt_number(m["precision"]),
            "sensitivity [95% CI]": fmt_with_ci(m, "sensitivity"),
            "specificity [95% CI]": fmt_with_ci(m, "specificity"),
            "F1": fmt_number(m["f1"]),
            "balanced accuracy [95% CI]": fmt_with_ci(m, "balanced_accuracy"),
            "AUC [95% CI]": fmt_with_ci(m, "auc"),
            "interval": m.get("accuracy_ci_method") or MISSING,
        }
        if m.get("top3_error") is not None:
            row["top-3 error"] = fmt_number(m["top3_error"])
        rows.append(row)
    return pd.DataFrame(rows)


def _per_class_table(metrics: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"class": name, "n": block["n"], **{k: fmt_number(block[k]) for k in
             ("precision", "sensitivity", "specificity", "f1", "auc")}}
            for name, block in metrics["per_class"].items()
        ]
    )


def _confusion_table(metrics: dict[str, Any]) -> pd.DataFrame:
    classes = metrics["classes"]
    frame = pd.DataFrame(metrics["confusion_matrix"], columns=[f"pred {c}" for c in classes])
    frame.insert(0, "true \\ predicted", classes)
    return frame


def subgroup_display(table: pd.DataFrame) -> pd.DataFrame:
    """Subgroup metrics as display strings: every rate with its 95% interval, n per cell, a flag below SMALL_N."""
    def with_ci(key: str) -> list[str]:  # no interval: the rate's denominator is empty in this cell
        return [fmt_interval(v, lo, hi) if pd.notna(lo) else MISSING
                for v, lo, hi in zip(table[key], table[f"{key}_lo"], table[f"{key}_hi"], strict=True)]

    shown = pd.DataFrame(
        {
            "attribute": table["attribute"],
            "group": table["group"],
            "n": table["n"],
            "people": table["people"],
            "n per class": table["n_per_class"],
            "accuracy [95% CI]": with_ci("accuracy"),
        }
    )
    for key in ("sensitivity", "specificity", "balanced_accuracy", "auc"):
        if key in table.columns:
            shown[f"{'AUC' if key == 'auc' else key.replace('_', ' ')} [95% CI]"] = with_ci(key)
    shown["interval"] = table["ci_method"]
    shown["flag"] = [f"⚠ n < {SMALL_N}" if small else "" for small in table["small_n"]]
    return shown


def stored_permutation(run: Any) -> dict[str, PermutationResult]:
    """The run's permutation test (``permutations=N``) recomputed from its files; empty without one."""
    stored = (run.stored_metrics or {}).get("permutation") or {}
    if not stored:
        return {}
    first = next(iter(stored.values()))
    return permutation_of_run(run.path, run.predictions, str(first["scheme"]), int(first["seed"]))


def permutation_table(permutation: dict[str, PermutationResult]) -> pd.DataFrame:
    """One display row per variant: observed accuracy, the null distribution, the p-value."""
    return pd.DataFrame([{
        "variant": variant, "accuracy": f"{r.observed:.3f}", "permutations": r.n_permutations,
        "scheme": r.scheme.replace("_", " "), "seed": r.seed,
        "permuted accuracies (mean, max)": f"{np.mean(r.null):.3f}, {np.max(r.null):.3f}",
        "null distribution": " ".join(f"{v:.3f}" for v in sorted(r.null)), "p": f"{r.p_value:.3g}",
    } for variant, r in permutation.items()])


def _title(summary: dict[str, Any]) -> str:
    what = " / ".join(str(summary[k]) for k in ("dataset", "task", "backbone", "weights", "strategy") if summary.get(k))
    return f"Evaluation: {what}"


def evaluate_run(
    run_dir: str | Path,
    predictions_df: pd.DataFrame | None = None,
    out_dir: str | Path | None = None,
    *,
    manifest_df: pd.DataFrame | None = None,
    title: str | None = None,
    sections: Callable[[Report, dict[str, Any]], None] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Recompute a run's metrics from its predictions.csv (or ``predictions_df``, e.g. external
    validation predictions made elsewhere with the run's model; ``manifest_df`` then supplies their
    metadata for the subgroup table). Returns the metrics.json content; with ``out_dir`` writes
    metrics.json, subgroups.csv, figures/ and report.md / report.html there; ``sections(report, summary)``
    adds sections of the caller's at the end (external validation's comparison with the run's own test split);
    ``extra``: the caller's fields added to the summary (and metrics.json).
    """
    run = load_run(run_dir, predictions_df)
    if run.failed:
        raise RunDirError(f"{run.path}: the training job failed ({run.failure_reason}); nothing to evaluate")
    if manifest_df is not None:
        run.manifest = manifest_df
    summary = recompute_metrics(run)
    controls = run_controls_of(run.path, run.predictions, run.classes, run.positive) if predictions_df is None else {}
    if controls:
        summary["controls"] = controls
    permutation = stored_permutation(run) if predictions_df is None else {}
    if permutation:
        summary["permutation"] = {variant: result.to_dict() for variant, result in permutation.items()}
    summary.update(extra or {})
    if out_dir is None:
        return summary
    out_dir = Path(out_dir)
    figures = out_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2, default=to_json))

    report = Report(title or _title(summary))
    source = "the predictions passed in" if predictions_df is not None else "predictions.csv"
    report.text(f"Run: {run.path}. Every number is recomputed from {source} (test role), not copied.")
    report.heading("Run")
    report.table(_info_table(summary))
    report.heading("Test metrics")
    report.table(_metrics_table(summary), caption="95% intervals are person-level (cluster bootstrap over "
                 "people when a person has several test images, Wilson with one image per person; column "
                 "'interval'); binary tasks: precision, sensitivity, specificity, F1 and AUC of the positive class "
                 f"({summary.get('positive')}); multiclass: macro averages; scikit-learn conventions, zero_division=0")
    if controls:
        report.heading("Controls: the same method, shown no face")
        report.table(controls_table(controls), caption="recomputed from controls/<name>/predictions.csv: face_blind "
                     "(eye-aligned crops, one fixed face region hidden), capture_only (the photo's four corners); "
                     "'method minus control' is paired over the same test photos (person bootstrap)")
    if permutation:
        report.heading("Permutation test: the whole pipeline retrained on permuted labels")
        report.table(permutation_table(permutation), caption="recomputed from permutations/<i>/predictions.csv: "
                     "labels permuted by person (a label of the person) or within person (a state of the photo), "
                     "the people in their roles; p = (1 + #{permuted >= observed}) / (1 + permutations)")
    differences = stored_differences(run, summary) if predictions_df is None else []
    if predictions_df is None and run.stored_metrics is not None:
        report.text("Check against the run's own metrics.json: " + (
            "reproduced for every variant (accuracy and confusion matrix exactly, the other rates to 1e-12)."
            if not differences else
            "DIFFERENCES: " + "; ".join(differences)))
    subgroup_frames = []
    for name, metrics in summary["variants"].items():
        part = run.predictions[(run.predictions["variant"] == name) & (run.predictions["role"] == TEST)]
        report.heading(f"Variant {name}")
        report.table(_per_class_table(metrics), caption=f"{name}: per class (one vs rest)")
        report.table(_confusion_table(metrics), caption=f"{name}: confusion matrix (rows = true class)")
        report.figure(_plot_confusion(metrics, figures / f"confusion_matrix_{name}.png",
                                      f"{name}: accuracy {metrics['accuracy']:.3f}"),
                      caption=f"{name}: confusion matrix")
        curves = roc_inputs(*targets_and_scores(part, run.classes), run.classes, run.positive)
        kind = f"positive class {run.positive}" if len(run.classes) == 2 else "one vs rest"
        report.figure(plot_roc(curves, figures / f"roc_{name}.png", f"{name}: ROC ({kind})"),
                      caption=f"{name}: ROC ({kind})")
        if run.manifest is not None:
            table = subgroup_table(part, run.manifest, run.classes, run.positive, _age_bands(run))
            if not table.empty:
                subgroup_frames.append(table.assign(variant=name))
                report.table(subgroup_display(table), caption=f"{name}: test metrics per subgroup (person-level "
                             f"95% intervals; ⚠ = fewer than {SMALL_N} test images: read as anecdote)")
        missing = missing_predictions(run, name) if predictions_df is None else pd.DataFrame()
        if not missing.empty:
            report.text(f"{len(missing)} test image(s) of split.csv have no {name} prediction and are not "
                        f"counted above (first {min(len(missing), MAX_LISTED)} listed).")
            report.table(missing.head(MAX_LISTED))
    if subgroup_frames:
        pd.concat(subgroup_frames, ignore_index=True).to_csv(out_dir / "subgroups.csv", index=False)
    if predictions_df is None:
        from facediag.evaluation.explanations import add_explanations

        add_explanations(report, run, summary["variant"], figures)
    if sections is not None:
        sections(report, summary)
    report.write(out_dir)
    return summary


def _plot_confusion(metrics: dict[str, Any], png: Path, title: str) -> Path:
    return plot_confusion_matrix(np.asarray(metrics["confusion_matrix"]), list(metrics["classes"]), png, title=title)
