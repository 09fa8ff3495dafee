"""What a command imports, and what that costs: the warm demo against the bare imports of its libraries,
and ``python -m facediag.models`` (which must not import Lightning).

Rows alternate (baseline, paused baseline, demo, ...) so that load changes hit all alike. The apps pause
cyclic garbage collection while their libraries import (facediag.core.startup), which the issue's bare baseline
does not: the "paused baseline" row imports the same libraries with the same setting, so the demo's own
cost shows against both. The demo runs on a
warm cache (one untimed run first fills it). facediag's bytecode is compiled first, as pip does for an installed
package (the libraries of the baseline have theirs): where ``PYTHONDONTWRITEBYTECODE`` is set, as on this
project's machines, an editable checkout would otherwise recompile every facediag module in every run.
``-X importtime`` lists the top-level packages each command imports beyond the baseline, with the import
time of those modules (their own, summed per package).

    FACEDIAG_DATA_DIR=/work/shared/data python benchmarks/imports.py [--repeats 3]
    python benchmarks/imports.py --repeats 0      # only the import lists
"""

from __future__ import annotations

import argparse
import compileall
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

from common import REPO, load_average, print_header, print_table, run_script

BASELINE = "import torch, pytorch_lightning, sklearn, dlib, hydra"
#: the same imports with cyclic collection paused and the heap frozen afterwards, as the apps start
#: (facediag.core.startup): the like-for-like baseline, so the demo's own cost is not hidden by the start-up setting
BASELINE_PAUSED = f"import gc; gc.disable(); {BASELINE}; gc.freeze(); gc.enable()"
LIST_MODELS = ("-m", "facediag.models", "--no-macs")


def imported(stderr: str) -> dict[str, float]:
    """Module -> its own import seconds (without its imports), from ``-X importtime`` output."""
    found: dict[str, float] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        own, _, name = line.removeprefix("import time:").split("|", 2)
        if own.strip().isdigit():
            found[name.strip()] = int(own) / 1e6
    return found


def beyond(command: dict[str, float], baseline: dict[str, float]) -> list[tuple[float, str]]:
    """Seconds per top-level package of the modules ``command`` imports and the baseline does not."""
    packages: dict[str, float] = {}
    for module, seconds in command.items():
        if module not in baseline:
            top = module.split(".")[0]
            packages[top] = packages.get(top, 0.0) + seconds
    return sorted(((s, p) for p, s in packages.items() if s >= 0.05), reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_imports_"))
    runs = iter(range(1000))

    def demo() -> tuple[str, ...]:
        """The demo in a fresh run dir (a finished one would be skipped as complete)."""
        return "train.py", f"hydra.run.dir={work}/demo{next(runs)}"

    print_header("imports: warm demo vs bare library imports", repeats=args.repeats)
    compiled = compileall.compile_dir(REPO / "facediag", quiet=1)
    print(f"facediag bytecode compiled: {bool(compiled)}")
    run_script(*demo()).check("demo (filling the cache)")
    if args.repeats:
        time_commands(demo, args.repeats)
    baseline = imported(run_script("-X", "importtime", "-c", BASELINE).check("baseline").stderr)
    for label, command in (("python train.py", ("-X", "importtime", *demo())),
                           ("python -m facediag.models", ("-X", "importtime", *LIST_MODELS))):
        modules = imported(run_script(*command).check(label).stderr)
        extra = beyond(modules, baseline)
        print(f"\n{label}: modules beyond the baseline, own import s per package (>= 0.05 s; total "
              f"{sum(s for s, _ in extra):.2f}): " + (", ".join(f"{p} {s:.2f}" for s, p in extra) or "none"))
        print(f"{label}: imports pytorch_lightning: {'pytorch_lightning' in modules}")
    print(f"\nload average at the end: {load_average()}")


def time_commands(demo: Callable[[], tuple[str, ...]], repeats: int) -> None:
    """Median wall seconds of the baseline, the warm demo and the model list, interleaved."""
    seconds: dict[str, list[float]] = {"baseline": [], "paused": [], "demo": [], "models": []}
    for _ in range(repeats):
        seconds["baseline"].append(run_script("-c", BASELINE).check("baseline").seconds)
        seconds["paused"].append(run_script("-c", BASELINE_PAUSED).check("paused baseline").seconds)
        seconds["demo"].append(run_script(*demo()).check("demo").seconds)
        seconds["models"].append(run_script(*LIST_MODELS).check("python -m facediag.models").seconds)
    base, paused = statistics.median(seconds["baseline"]), statistics.median(seconds["paused"])
    names = {"baseline": "bare imports (the issue's baseline)", "paused": "bare imports, collection paused",
             "demo": "python train.py (warm demo)", "models": "python -m facediag.models --no-macs"}
    print_table([
        {"command": names[key], "median wall s": statistics.median(runs), "runs": str([round(s, 1) for s in runs]),
         "x baseline": statistics.median(runs) / base, "x paused baseline": statistics.median(runs) / paused}
        for key, runs in seconds.items()
    ])
    print(f"baseline: python -c '{BASELINE}'; paused: python -c '{BASELINE_PAUSED}'")


if __name__ == "__main__":
    main()
