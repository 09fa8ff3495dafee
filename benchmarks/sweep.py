"""Wall time of the London results table as one sweep, then of its report.

    python train.py -m experiment=london_table hydra.sweep.dir=<dir>     (14 jobs: sex / expression x
        dlib ResNet DTL2, EfficientNet-Lite0 DTL2, three fused DTL2 presets, dlib ResNet DTL1 on a CPU budget,
        dense SIFT)
    python evaluate.py sweep=<dir>

The cache starts empty unless ``--cache-dir`` names a filled one, so the first job pays for the face
landmarks and the later jobs reuse them. Prints one row per job (its in-job wall time from
metrics.json, or its failure) and checks that the report has one row per job.

    FACEDIAG_DATA_DIR=/work/shared/data python benchmarks/sweep.py [--cache-dir DIR] [overrides...]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import pandas as pd
from common import print_header, print_table, run_script
from omegaconf import OmegaConf


def job_rows(sweep_dir: Path) -> list[dict[str, object]]:
    """One row per job dir of the sweep: its overrides, wall time and test accuracy, or why it failed."""
    rows = []
    for job in sorted((p for p in sweep_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)):
        overrides = dict(o.split("=", 1) for o in OmegaConf.load(job / ".hydra" / "overrides.yaml"))
        row: dict[str, object] = {"job": job.name, "task": overrides.get("data.task", "?"),
                                  "method": overrides.get("method", "?")}  # fmt: skip
        if (job / "FAILED").is_file():
            reason = (job / "FAILED").read_text().strip().splitlines()[-1]
            row.update({"in-job s": "-", "epochs": "-", "val_score": "-", "accuracy": f"FAILED: {reason[:60]}"})
        elif (job / "metrics.json").is_file():
            metrics = json.loads((job / "metrics.json").read_text())
            val = metrics.get("val_score")
            row.update({"in-job s": float(metrics["wall_time_s"]), "epochs": metrics.get("epochs", "-"),
                        "val_score": "-" if val is None else float(val),
                        "accuracy": float(metrics["accuracy"])})  # fmt: skip
        else:
            row.update({"in-job s": "-", "epochs": "-", "val_score": "-", "accuracy": "no result"})
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None, help="default: a new temporary folder")
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: <workdir>/cache (empty: cold)")
    parser.add_argument("overrides", nargs="*", help="extra train.py overrides, e.g. num_threads=2")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="facediag-bench-sweep-"))
    cache = args.cache_dir or workdir / "cache"
    cold = not cache.exists() or not any(cache.iterdir())
    sweep_dir = workdir / "sweep"
    print_header("benchmarks/sweep.py: experiment=london_table sweep + evaluate.py report",
                 sweep_dir=str(sweep_dir), cache=f"{cache} ({'cold' if cold else 'warm'})",
                 overrides=" ".join(args.overrides) or "-")  # fmt: skip

    train = run_script("train.py", "-m", "experiment=london_table", f"hydra.sweep.dir={sweep_dir}",
                       f"paths.cache_dir={cache}", *args.overrides)  # fmt: skip
    if not sweep_dir.is_dir():
        train.check("train.py -m experiment=london_table")
    rows = job_rows(sweep_dir)
    print()
    print_table(rows)
    failed = sum(str(r["accuracy"]).startswith("FAILED") for r in rows)
    print(f"\nsweep: {len(rows)} jobs ({failed} failed), wall time {train.seconds:.1f} s "
          f"({train.seconds / 60:.1f} min), exit status {train.returncode}")  # fmt: skip

    report_dir = workdir / "evaluate"
    evaluate = run_script("evaluate.py", f"sweep={sweep_dir}", f"hydra.run.dir={report_dir}")
    csvs = sorted(report_dir.rglob("report.csv"))
    if evaluate.returncode != 0 or not csvs:
        tail = "\n".join((evaluate.stdout + evaluate.stderr).splitlines()[-15:])
        print(f"evaluate.py sweep=<dir>: FAILED (exit {evaluate.returncode}, {evaluate.seconds:.1f} s)\n{tail}")
        return
    report = pd.read_csv(csvs[0])
    reported = {Path(str(d)).name for d in report["run_dir"]}
    missing = sorted({str(r["job"]) for r in rows} - reported, key=int)
    print(f"evaluate.py sweep=<dir>: {evaluate.seconds:.1f} s, {len(report)} report rows (DSIFT: 2 variants "
          f"per job) covering {len(rows) - len(missing)} of {len(rows)} jobs"
          f"{'; missing jobs ' + ', '.join(missing) if missing else ''} in {csvs[0]}")  # fmt: skip


if __name__ == "__main__":
    main()
