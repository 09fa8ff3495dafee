"""What `evaluate.py` does with its config: evaluate one run or a sweep and print a summary."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from facediag.evaluation.single import evaluate_run
from facediag.evaluation.sweep import display_table, evaluate_sweep, group_rows_by_table
from facediag.scoring.controls import control_lines
from facediag.scoring.permutation import PermutationResult
from facediag.scoring.results import DISCLAIMER


def evaluate(
    run: str | None, sweep: str | Sequence[str] | None, out_dir: str | Path, data: DictConfig | None = None,
    recalibrate: int | None = None, seed: int = 0,
) -> dict[str, Any]:
    """Exactly one of ``run`` (a run dir) and ``sweep`` (dir, list or glob); reports go to ``out_dir``.

    ``run`` with ``data`` (e.g. data=folder data.root=<folder>) is external validation of that run;
    ``recalibrate`` (people per class of that folder, drawn with ``seed``) re-thresholds on them, reported apart.
    """
    if (run is None) == (sweep is None):
        raise ValueError("evaluate.py: give exactly one of run=<run dir> or sweep=<dir, list or glob>")
    if data is not None and run is None:
        raise ValueError("evaluate.py: data=... (external validation) goes with run=<run dir>")
    if recalibrate is not None and data is None:
        raise ValueError("evaluate.py: recalibrate=<people per class> goes with external validation (run= and data=)")
    out_dir = Path(out_dir)
    if run is not None:
        if data is not None:
            from facediag.evaluation.external import external_validation

            summary = external_validation(run, data, out_dir, recalibrate, seed)
            source = f"the run's model applied to {data.get('root')}"
            print_transfer(summary["transfer"])
            if summary["external_controls"]:
                print("  controls: the run's own control models scored on these photos (under each accuracy below)")
            for line in summary["external_controls_not_scored"]:
                print(f"  control not scored on these photos: {line}")
        else:
            summary = evaluate_run(run, out_dir=out_dir)
            source = f"{run}/predictions.csv"
        for warning in summary.get("training_overlaps", []):
            print(f"WARNING: {warning}")
        print(f"\nrecomputed from {source}:")
        for name, m in summary["variants"].items():
            low, high = m["accuracy_ci"]
            print(f"  {name:<12} accuracy {m['accuracy']:.4f}  [95% CI {low:.3f}-{high:.3f}, "
                  f"{m['accuracy_ci_method']}]  ({m['n_correct']}/{m['n']})")
            for line in control_lines(summary.get("controls") or summary.get("external_controls") or {}, name):
                print(line)
            if (permutation := (summary.get("permutation") or {}).get(name)) is not None:
                print(f"    {PermutationResult.from_dict(permutation).summary()}")
        print(f"  report: {out_dir / 'report.html'}\n  {DISCLAIMER}\n")
        return summary
    result = evaluate_sweep(sweep, out_dir=out_dir)
    for (dataset, task, classes), rows in group_rows_by_table(result.rows).items():
        table, _ = display_table(rows, list(classes))
        print(f"\n{dataset} / {task}")
        print(table.to_string(index=False))
    print(f"\n  report: {out_dir / 'report.html'} (csv: {out_dir / 'report.csv'})\n  {DISCLAIMER}\n")
    return {"rows": len(result.rows), "runs": len(result.runs)}


def print_transfer(transfer: dict[str, Any]) -> None:
    """Internal vs external, the threshold-shift warning and the re-thresholded result, on the console."""
    print("\ninternal (the run's test split) vs external:")
    for row in transfer["internal_vs_external"]:
        values = [row["internal"], row["external"], row["change"]]
        shown = ["   n/a" if v is None or v != v else f"{v:+.3f}" if i == 2 else f"{v:.3f}"
                 for i, v in enumerate(values)]
        print(f"  {row['metric']:<18} {shown[0]}  ->  {shown[1]}  ({shown[2]})")
    if transfer.get("threshold_shift"):
        print(f"WARNING: {transfer['threshold_shift']}")
    moved = transfer.get("rethreshold")
    if moved:
        before, after = moved["held_out_before"], moved["held_out_after"]
        low, high = after["accuracy_ci"]
        print(f"re-thresholded on {len(moved['calibration_people'])} people of the new site; the other {after['n']} "
              f"photos: accuracy {before['accuracy']:.3f} -> {after['accuracy']:.3f} [95% CI {low:.3f}-{high:.3f}]")
