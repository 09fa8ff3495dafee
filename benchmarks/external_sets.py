"""Build capture-matched external expression sets (neutral / smiling photos of the same people, one camera and one
processing path) from public research face databases held in a git snapshot, for `evaluate.py run=... data=folder`.

Each set is a `<out>/<class>/<file>` tree plus `<out>/subjects.csv` (`path,label,subject`, paths relative to
``<out>``). The photos are copied byte for byte from the pinned commit of the snapshot (no re-encoding: both classes
keep their one capture path). They stay on this machine: the databases' licences allow research use, not
redistribution, so never commit them (docs/results/external.md records source, commit and licence).

    python benchmarks/external_sets.py yale --git-dir /work/.mirror/jessexuu+Twitter-Pride/repo \
        --out /work/shared/data/external/yale

``table`` prints the transfer table of docs/results/external.md from the `evaluate.py run=<run> data=folder ...`
output dirs (one per run, named like the run dir) and the sweep's `report.csv` (London test accuracy, selection
score, `chosen`):

    python benchmarks/external_sets.py table --evals /work/external_eval/yale --runs /work/lt_out \
        --report /work/lt_eval/report.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's facediag (table: threshold_shift)


@dataclass(frozen=True)
class ExternalSet:
    """Where one database's neutral / smiling pairs sit in a public repository, at a pinned commit."""

    repo: str
    commit: str
    folder: str
    subjects: tuple[str, ...]
    files: dict[str, str]  # class -> file name pattern, {subject} filled in
    licence: str


SETS: dict[str, ExternalSet] = {
    # Yale Face Database (Belhumeur, Hespanha & Kriegman 1997): 15 people, 'normal' and 'happy' among 11
    # configurations, one camera, greyscale 320x243; the repository's files are the original GIF bytes (GIF87a)
    # under a .png name, kept as they are.
    "yale": ExternalSet(
        repo="jessexuu/Twitter-Pride",
        commit="e190945938d9de7f37d2063799c7547a8a32b2ae",
        folder="analytics/faces_yale/original",
        subjects=tuple(f"{i:02d}" for i in range(1, 16)),
        files={"neutral": "{subject}_normal.png", "smiling": "{subject}_happy.png"},
        licence="research use without permission; no redistribution within a larger public database",
    ),
}


def git_blob(git_dir: Path, commit: str, path: str) -> bytes:
    """One file's bytes at ``commit`` of a bare snapshot (`git show`)."""
    return subprocess.run(
        ["git", f"--git-dir={git_dir}", "show", f"{commit}:{path}"], check=True, capture_output=True
    ).stdout


def build(name: str, git_dir: Path, out: Path) -> Path:
    """Write ``out/<class>/<file>`` and ``out/subjects.csv`` for set ``name``; returns the CSV's path."""
    spec = SETS[name]
    rows = []
    for label, pattern in spec.files.items():
        (out / label).mkdir(parents=True, exist_ok=True)
        for subject in spec.subjects:
            file = pattern.format(subject=subject)
            (out / label / file).write_bytes(git_blob(git_dir, spec.commit, f"{spec.folder}/{file}"))
            rows.append({"path": f"{label}/{file}", "label": label, "subject": f"{name}{subject}"})
    table = out / "subjects.csv"
    with table.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "subject"])
        writer.writeheader()
        writer.writerows(rows)
    return table


def method_name(row: pd.Series) -> str:
    """A report.csv row's method in words: backbone(s), strategy, DSIFT variant."""
    if row["strategy"] == "dsift":
        return f"dense SIFT, {row['variant']}"
    return f"{row['backbone']} {row['strategy']}"


def _interval(ci: list[float]) -> str:
    return f"[{ci[0]:.3f}–{ci[1]:.3f}]"


def transfer_rows(evals: Path, runs: Path, report: Path) -> pd.DataFrame:
    """One row per (run, variant) evaluated under ``evals``: London figures from ``report``, external from the run's
    `metrics.json` and `internal_vs_external.csv` (threshold shift: facediag.evaluation.transfer.threshold_shift)."""
    from facediag.evaluation.transfer import threshold_shift

    london = pd.read_csv(report)
    rows = []
    outs = [p for p in evals.iterdir() if (p / "metrics.json").is_file()]
    for out in sorted(outs, key=lambda p: (len(p.name), p.name)):  # run dirs 7, 8, ..., 13 in order
        metrics = json.loads((out / "metrics.json").read_text())
        shift = threshold_shift(pd.read_csv(out / "internal_vs_external.csv"))
        for variant, m in metrics["variants"].items():
            mine = london[(london["run_dir"] == str(runs / out.name)) & (london["variant"] == variant)]
            if mine.empty:
                mine = london[london["run_dir"].str.endswith(f"/{out.name}") & (london["variant"] == variant)]
            row = mine.iloc[0]
            rows.append({
                "run": out.name,
                "method": method_name(row),
                "London test accuracy": f"{row['accuracy']:.3f}",
                "selection score (val)": f"{row['val_score']:.3f}",
                "chosen": bool(row["chosen"]),
                "external accuracy [95% CI]": f"{m['accuracy']:.3f} {_interval(m['accuracy_ci'])} "
                                              f"({m['n_correct']}/{m['n']}, {m['accuracy_ci_method']})",
                "AUC [95% CI]": f"{m['auc']:.3f} {_interval(m['auc_ci'])}",
                "sensitivity / specificity": f"{m['sensitivity']:.3f} / {m['specificity']:.3f}",
                "threshold shift": ("yes" if shift else "no") if variant == metrics["variant"] else "not computed",
            })
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=[*sorted(SETS), "table"])
    parser.add_argument("--git-dir", type=Path, help="bare snapshot of the set's repository")
    parser.add_argument("--out", type=Path, help="outside the repository: the photos are not ours")
    parser.add_argument("--evals", type=Path, help="table: the evaluate.py output dirs, one per run")
    parser.add_argument("--runs", type=Path, help="table: the sweep's run dirs")
    parser.add_argument("--report", type=Path, help="table: the sweep's report.csv (evaluate.py sweep=)")
    args = parser.parse_args()
    if args.name == "table":
        table = transfer_rows(args.evals, args.runs, args.report)
        print("| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns))
        for row in table.itertuples(index=False):
            print("| " + " | ".join(str(v) for v in row) + " |")
        return
    spec = SETS[args.name]
    table = build(args.name, args.git_dir, args.out)
    print(f"{args.name}: {len(spec.subjects)} people x {len(spec.files)} classes -> {args.out} ({table})")
    print(f"source: github.com/{spec.repo} @ {spec.commit} : {spec.folder}; licence: {spec.licence}")


if __name__ == "__main__":
    main()
