"""Speed of applying a finished run: one photo (whole process) and a folder of London photos, cold cache.

Targets (issue 11): one photo within 2.0x the wall time of ``python -c "import torch, dlib"``; a folder
cold >= 25 images/s on 2 cores. Every repeat runs the three commands one after another in fresh
processes (so they share the machine's load), each prediction with an empty landmark/crop cache
(``cache_dir=<new folder>``). Wall and CPU seconds (user + system of the child) are medians over
``--repeats``; on a shared machine the CPU-time ratio is the steadier estimate.

    FACEDIAG_DATA_DIR=/work/shared/data python benchmarks/predict.py --workdir /tmp/bench_predict
    # one photo: python -m facediag.predict <photo> run=<demo run> cache_dir=<empty>
    # folder:    python -m facediag.predict <london-faces/neutral> run=<demo run> cache_dir=<empty> workers=2

Without ``--run`` the demo (``python train.py``, DTL2 dlib ResNet + linear SVM) is trained first.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, load_average, print_header, print_table, run_script

DATA_DIR = Path(os.environ.get("FACEDIAG_DATA_DIR", REPO / "data"))


def timed(command: list[str]) -> tuple[float, float]:
    """(wall s, CPU s of the child) of one command run from the repository root."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{out.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def in_process(run_dir: Path, folder: Path, cache: Path, workers: int) -> tuple[float, float]:
    """(wall s, CPU s of this process and its workers) of scoring the folder once the run is loaded and warm."""
    import numpy as np

    from facediag.apply.trained_run import TrainedRun

    run = TrainedRun(run_dir)
    run.score_crops(np.zeros((1, *[run.crop[0]] * 2, 3), dtype=np.uint8))  # model loaded, first call done
    paths = sorted(str(p) for p in folder.rglob("*") if p.is_file())
    before = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    started = time.perf_counter()
    scored = run.score(paths, n_workers=workers, cache_dir=cache)
    wall = time.perf_counter() - started
    after = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    assert len(scored.paths) > 0.9 * len(paths), "most London photos should have a face"
    cpu = sum((a.ru_utime - b.ru_utime) + (a.ru_stime - b.ru_stime) for a, b in zip(after, before, strict=True))
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench_predict"))
    parser.add_argument("--run", type=Path, default=None, help="a finished run dir (default: train the demo)")
    parser.add_argument("--photo", type=Path, default=DATA_DIR / "london-faces" / "neutral" / "001_03.jpg")
    parser.add_argument("--folder", type=Path, default=None, help="default: London neutral + smiling (204 photos)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    run_dir = args.run
    if run_dir is None:
        run_dir = args.workdir / "demo"
        if not (run_dir / "metrics.json").is_file():
            demo = run_script("train.py", f"hydra.run.dir={run_dir}", f"paths.data_dir={DATA_DIR}", "logger=none")
            demo.check("the demo")
    if args.folder is None:
        args.folder = args.workdir / "london_photos"
        for expression in ("neutral", "smiling"):
            for photo in sorted((DATA_DIR / "london-faces" / expression).glob("*.jpg")):
                link = args.folder / f"{expression}_{photo.name}"
                link.parent.mkdir(parents=True, exist_ok=True)
                if not link.exists():
                    link.symlink_to(photo)
    n_images = sum(1 for p in args.folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    print_header("facediag.apply.predict: one photo and a folder, cold cache", run=run_dir, photo=args.photo.name,
                 folder=f"{args.folder} ({n_images} images)", repeats=args.repeats, workers=args.workers)
    predict = [sys.executable, "-m", "facediag.predict"]
    samples: dict[str, list[tuple[float, float]]] = {"import": [], "photo": [], "folder": [], "in-process": []}
    for repeat in range(args.repeats):
        cache = args.workdir / f"cache_{os.getpid()}_{repeat}"
        samples["import"].append(timed([sys.executable, "-c", "import torch, dlib"]))
        samples["photo"].append(timed([*predict, str(args.photo), f"run={run_dir}", f"cache_dir={cache}_photo",
                                       f"out={args.workdir / 'photo'}"]))
        samples["folder"].append(timed([*predict, str(args.folder), f"run={run_dir}", f"cache_dir={cache}_folder",
                                        f"workers={args.workers}", f"out={args.workdir / 'folder.csv'}"]))
        samples["in-process"].append(in_process(run_dir, args.folder, Path(f"{cache}_inproc"), args.workers))
    wall = {k: statistics.median(w for w, _ in v) for k, v in samples.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in samples.items()}

    def row(what: str, key: str, images: int | None = None) -> dict[str, object]:
        rate = f"{images / wall[key]:.1f} (cpu s / 2 cores: {images / (cpu[key] / 2):.1f})" if images else "-"
        return {"what": what, "wall s": wall[key], "cpu s": cpu[key], "wall / import": wall[key] / wall["import"],
                "cpu / import": cpu[key] / cpu["import"], "images/s": rate}

    print_table([
        row('`python -c "import torch, dlib"`', "import"),
        row("one photo (whole process)", "photo"),
        row(f"folder of {n_images} (whole process)", "folder", n_images),
        row(f"folder of {n_images}, in-process once loaded (TrainedRun.score)", "in-process", n_images),
    ])
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
