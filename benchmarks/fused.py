"""Fused DTL2 against its single-backbone rows: wall time of the London table rows, and the issue-15 targets.

    time   python train.py -m experiment=london_table method=<dlib DTL2>,<EfficientNet DTL2>,<fused>
           (warm per-image feature cache: the features come from it) and the per-row in-job wall time;
           target: fused <= 1.5 x (dlib + EfficientNet).
    check  reads the learning_curves.csv that `python evaluate.py sweep=<dirs>` wrote for a
           london_learning_curve sweep and prints the targets: at all training people one preset reaching
           sex x expression >= 0.965, expression >= 0.985, sex >= 0.995; at 10 people per class the best
           DTL2 / DTL1 row >= 20 points above the best dense-SIFT row on every task.

    FACEDIAG_DATA_DIR=/work/shared/data python benchmarks/fused.py time [--workdir DIR] [overrides...]
    python benchmarks/fused.py check <evaluate output dir>/learning_curves.csv
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
from common import print_header, print_table, run_script
from sweep import job_rows

SINGLES = ("dlib_resnet_dlib_faces_dtl2", "efficientnet_lite0_imagenet_dtl2")
FUSED = "dlib_resnet_efficientnet_lite0_dtl2_fused"
TARGETS = {"sex_expression": 0.965, "expression": 0.985, "sex": 0.995}


def time_rows(workdir: Path, overrides: list[str]) -> None:
    sweep_dir = workdir / "sweep"
    print_header("benchmarks/fused.py time: London table rows, fused DTL2 vs its single-backbone rows",
                 sweep_dir=str(sweep_dir), overrides=" ".join(overrides) or "-")  # fmt: skip
    run = run_script("train.py", "-m", "experiment=london_table", f"method={','.join((*SINGLES, FUSED))}",
                     f"hydra.sweep.dir={sweep_dir}", *overrides).check("the london_table sweep")  # fmt: skip
    rows = job_rows(sweep_dir)
    print_table(rows)
    seconds = pd.DataFrame(rows).query("`in-job s` != '-'").groupby("method")["in-job s"].sum()
    singles = sum(float(seconds.get(m, float("nan"))) for m in SINGLES)
    fused = float(seconds.get(FUSED, float("nan")))
    print(f"\nsweep wall time {run.seconds:.1f} s; in-job s summed over tasks: "
          + ", ".join(f"{m} {seconds.get(m, float('nan')):.1f}" for m in (*SINGLES, FUSED)))  # fmt: skip
    print(f"fused / (sum of single rows) = {fused:.1f} / {singles:.1f} = {fused / singles:.2f} (target <= 1.5)")


def check_targets(csv: Path) -> None:
    points = pd.read_csv(csv)
    points["strategy"] = points["method"].str.split("/").str[-1].str.split(" ").str[0]
    full = points[points["train_subjects_per_class"] == "all"]
    print("all training people: accuracy [95% CI] (target)")
    table = full.pivot_table(index="method", columns="task", values="accuracy", aggfunc="first")
    for method, row in table.iterrows():
        met = all(row.get(t, 0) >= goal for t, goal in TARGETS.items())
        print(f"  {method:<60} " + "  ".join(f"{t} {row.get(t, float('nan')):.3f}" for t in TARGETS)
              + ("   <- meets all three" if met else ""))  # fmt: skip
    ten = points[points["train_subjects_per_class"] == "10"]
    print("\n10 training people per class: best DTL2/DTL1 row minus best dense-SIFT row (target >= 0.20)")
    for task, part in ten.groupby("task"):
        cnn = part[part["strategy"] != "dsift"]
        dsift = part[part["strategy"] == "dsift"]
        if cnn.empty or dsift.empty:
            print(f"  {task}: missing rows (cnn {len(cnn)}, dsift {len(dsift)})")
            continue
        best, base = cnn.loc[cnn["accuracy"].idxmax()], dsift.loc[dsift["accuracy"].idxmax()]
        gap = best["accuracy"] - base["accuracy"]
        print(f"  {task:<15} {best['method']} {best['accuracy']:.3f} [{best['accuracy_lo']:.3f}-"
              f"{best['accuracy_hi']:.3f}] vs {base['method']} {base['accuracy']:.3f} [{base['accuracy_lo']:.3f}-"
              f"{base['accuracy_hi']:.3f}]: {gap:+.3f} {'met' if gap >= 0.2 else 'NOT met'}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    timing = sub.add_parser("time")
    timing.add_argument("--workdir", type=Path, default=None, help="default: a new temporary folder")
    timing.add_argument("overrides", nargs="*", help="extra train.py overrides, e.g. num_threads=1")
    check = sub.add_parser("check")
    check.add_argument("csv", type=Path)
    args = parser.parse_args()
    if args.command == "time":
        time_rows(args.workdir or Path(tempfile.mkdtemp(prefix="facediag-bench-fused-")), args.overrides)
    else:
        check_targets(args.csv)


if __name__ == "__main__":
    main()
