"""Checks and timings of the GPU run (`benchmarks/gpu.sh`); each prints a small table.

    python benchmarks/gpu.py features <run A> <run B>        # max abs difference of features/<role>.npz
    python benchmarks/gpu.py predict <run> <predict CSV>     # predict's scores vs the run's predictions.csv
    python benchmarks/gpu.py epochs <out CSV> <sweep dir>... # seconds per DTL1 epoch from TensorBoard events
    python benchmarks/gpu.py paired <A sweep dir> <B sweep dir>...  # A vs each method of B on the same test photos
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROLES = ("train", "val", "test")


def features(run_a: Path, run_b: Path) -> float:
    """Largest absolute difference between the two runs' DTL2 features of the same images (matched by path)."""
    worst = 0.0
    for role in ROLES:
        a, b = (np.load(run / "features" / f"{role}.npz") for run in (run_a, run_b))
        order = {p: i for i, p in enumerate(b["paths"])}
        fb = b["features"][[order[p] for p in a["paths"]]]
        diff = np.abs(a["features"] - fb)
        scale = float(np.abs(a["features"]).max())
        worst = max(worst, float(diff.max()))
        print(f"{role}: {len(a['paths'])} images x {a['features'].shape[1]}  max |a-b| {diff.max():.3g}  "
              f"mean |a-b| {diff.mean():.3g}  max |a| {scale:.3g}")
    for run in (run_a, run_b):
        m = json.loads((run / "metrics.json").read_text())
        variant = next(iter(m["variants"].values()))
        print(f"{run.name}: accuracy {variant['accuracy']:.3f}, SVM C {m.get('svm_C')}, wall {m.get('wall_time_s')} s")
    return worst


def predict(run: Path, scores_csv: Path) -> float:
    """Largest difference between predict's probabilities and the run's test-pass scores (DTL1: softmax)."""
    stored = pd.read_csv(run / "predictions.csv")
    stored = stored[stored["role"] == "test"].set_index("path")
    scored = pd.read_csv(scores_csv).set_index("path").loc[stored.index]
    columns = [c for c in stored.columns if c.startswith("score_")]
    diff = np.abs(stored[columns].to_numpy() - scored[columns].to_numpy())
    agree = float((stored["pred"] == scored["top1"]).mean())
    print(f"{len(stored)} test images: max |predict - predictions.csv| {diff.max():.3g}, top-1 agreement {agree:.3f}, "
          f"status {scored['status'].value_counts().to_dict()}")
    return float(diff.max())


def epoch_seconds(run: Path) -> list[float]:
    """Seconds between consecutive epoch-end validation losses (epochs 2..n) of a DTL1 run's TensorBoard events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    times: list[float] = []
    for events in sorted((run / "tensorboard").rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        if "val/loss" in accumulator.Tags().get("scalars", []):
            times = [e.wall_time for e in accumulator.Scalars("val/loss")]
            break
    return list(np.diff(times))


def epochs(out_csv: Path, sweeps: list[Path]) -> pd.DataFrame:
    """One row per finished DTL1 run: task, size, fold, seed, epochs, wall time and seconds per epoch."""
    rows = []
    for metrics in sorted(p for sweep in sweeps for p in sweep.glob("**/metrics.json")):
        run = metrics.parent
        m = json.loads(metrics.read_text())
        seconds = epoch_seconds(run)
        rows.append({"run": str(run), "task": m.get("task"), "epochs": m.get("epochs"),
                     "wall_time_s": m.get("wall_time_s"), "n_train": m.get("n_train"),
                     "median_epoch_s": float(np.median(seconds)) if seconds else None,
                     "epoch_s": " ".join(f"{s:.2f}" for s in seconds)})
    table = pd.DataFrame(rows)
    table.to_csv(out_csv, index=False)
    if len(table):
        print(f"{len(table)} runs: median s/epoch {table['median_epoch_s'].median():.2f} (epochs 2..n, train + "
              f"validation), median wall {table['wall_time_s'].median():.1f} s, "
              f"median epochs {table['epochs'].median()}")
    return table


def test_outcomes(roots: list[Path]) -> pd.DataFrame:
    """Every test prediction under ``roots``: method, task, size, split seed, photo (file stem), person, correct."""
    import yaml

    frames = []
    for predictions in sorted(p for root in roots for p in root.glob("**/predictions.csv")):
        config = yaml.safe_load((predictions.parent / ".hydra" / "config.yaml").read_text())
        data, strategy = config["data"], config["strategy"]["name"]
        method = strategy if strategy == "dsift" else f"{config['backbone']['name']}/{strategy}"
        test = pd.read_csv(predictions, dtype={"subject": str})
        test = test[test["role"] == "test"]
        frames.append(pd.DataFrame({
            "method": [f"{method} {v}" if v != strategy else method for v in test["variant"]],
            "task": data["task"], "size": str(data.get("train_subjects_per_class")), "seed": data["split_seed"],
            "photo": [Path(p).stem for p in test["path"]], "subject": test["subject"],
            "correct": (test["pred"] == test["label"]).to_numpy()}))
    return pd.concat(frames, ignore_index=True)


def paired(a_root: Path, b_roots: list[Path]) -> pd.DataFrame:
    """Method A (all runs under ``a_root``) against every method under ``b_roots``, per task and size, on the same
    test photos of the same split seeds: McNemar's exact test over people and the paired person-bootstrap interval
    of the accuracy difference A - B (``facediag.scoring.stats.paired_comparison``)."""
    from facediag.scoring.stats import paired_comparison

    a, b = test_outcomes([a_root]), test_outcomes(b_roots)
    keys = ["task", "size", "seed", "photo"]
    rows = []
    for (method_b, task, size), part in b.groupby(["method", "task", "size"]):
        for method_a, mine in a[(a["task"] == task) & (a["size"] == size)].groupby("method"):
            both = mine.merge(part, on=keys, suffixes=("_a", "_b"))
            if both.empty:
                continue
            c = paired_comparison(both["correct_a"], both["correct_b"], both["subject_a"])
            rows.append({"task": task, "size": size, "a": method_a, "b": method_b, "n_pairs": len(both),
                         "acc_a": both["correct_a"].mean(), "acc_b": both["correct_b"].mean(),
                         "a_minus_b": c.accuracy_difference, "ci_lo": c.difference_ci[0], "ci_hi": c.difference_ci[1],
                         "people_a_better": c.n_a_better, "people_b_better": c.n_b_better, "p_mcnemar": c.p_value})
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return table


if __name__ == "__main__":
    command, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    if command == "features" and len(args) == 2:
        features(Path(args[0]), Path(args[1]))
    elif command == "predict" and len(args) == 2:
        predict(Path(args[0]), Path(args[1]))
    elif command == "epochs" and len(args) >= 2:
        epochs(Path(args[0]), [Path(a) for a in args[1:]])
    elif command == "paired" and len(args) >= 2:
        paired(Path(args[0]), [Path(a) for a in args[1:]])
    else:
        sys.exit(__doc__)
