"""What a command imports, and what that costs: the warm demo against the bare imports of its libraries,
and ``python -m facediag.models`` (which must not import Lightning).

Rows alternate (baseline, demo, baseline, demo, ...) so that load changes hit both alike. The demo runs on a
warm cache (one untimed run first fills it). ``-X importtime`` lists the top-level packages each command
imports beyond the baseline, with their cumulative import time.

    FACEDIAG_DATA_DIR=/work/shared/data python benchmarks/imports.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from common import load_average, print_header, print_table, run_script

BASELINE = "import torch, pytorch_lightning, sklearn, dlib, hydra"
LIST_MODELS = ("-m", "facediag.models", "--no-macs")


def imported(stderr: str) -> dict[str, float]:
    """Top-level package -> cumulative import seconds, from ``-X importtime`` output."""
    found: dict[str, float] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|", 2)
        if not cumulative.strip().isdigit():
            continue
        top = name.strip().split(".")[0]
        found[top] = max(found.get(top, 0.0), int(cumulative) / 1e6)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_imports_"))
    demo = ("train.py", f"hydra.run.dir={work}/demo")
    print_header("imports: warm demo vs bare library imports", repeats=args.repeats)
    run_script(*demo).check("demo (filling the cache)")

    seconds: dict[str, list[float]] = {"baseline": [], "demo": [], "models": []}
    for _ in range(args.repeats):
        seconds["baseline"].append(run_script("-c", BASELINE).check("baseline").seconds)
        seconds["demo"].append(run_script(*demo).check("demo").seconds)
        seconds["models"].append(run_script(*LIST_MODELS).check("python -m facediag.models").seconds)
    base = statistics.median(seconds["baseline"])
    print_table([
        {"command": "python -c '" + BASELINE + "'", "median wall s": base, "runs": str(seconds["baseline"]),
         "x baseline": 1.0},
        {"command": "python train.py (warm demo)", "median wall s": statistics.median(seconds["demo"]),
         "runs": str([round(s, 1) for s in seconds["demo"]]), "x baseline": statistics.median(seconds["demo"]) / base},
        {"command": "python -m facediag.models --no-macs", "median wall s": statistics.median(seconds["models"]),
         "runs": str([round(s, 1) for s in seconds["models"]]),
         "x baseline": statistics.median(seconds["models"]) / base},
    ])  # fmt: skip

    baseline = imported(run_script("-X", "importtime", "-c", BASELINE).check("baseline").stderr)
    for label, command in (("python train.py", ("-X", "importtime", *demo)),
                           ("python -m facediag.models", ("-X", "importtime", *LIST_MODELS))):
        packages = imported(run_script(*command).check(label).stderr)
        extra = sorted(((s, p) for p, s in packages.items() if p not in baseline and s >= 0.05), reverse=True)
        print(f"\n{label}: packages beyond the baseline (cumulative import s, >= 0.05 s): "
              + (", ".join(f"{p} {s:.2f}" for s, p in extra) or "none"))
        print(f"{label}: imports pytorch_lightning: {'pytorch_lightning' in packages}")
    print(f"\nload average at the end: {load_average()}")


if __name__ == "__main__":
    main()
