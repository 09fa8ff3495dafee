"""Wall time of the demo (`python train.py`: London sex, dlib ResNet features + linear SVM) with an empty
cache (cold: landmarks, crops and features computed) and a filled one (warm), and DTL1 seconds per epoch.

Every run is a fresh `python train.py` process (imports included, as a user sees it) with
``paths.cache_dir`` and ``hydra.run.dir`` under a temporary folder. DTL1 epoch times are the
wall-clock gaps between consecutive epoch-end ``train/loss`` events in the run's TensorBoard log
(one epoch = training + validation + checkpointing), on the warm cache.

    FACEDIAG_DATA_DIR=/work/shared/data python benchmarks/train.py [--warm-repeats 3] [--epochs 3]
    python benchmarks/train.py trainer=gpu      # on a CUDA machine (bf16-mixed)
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from common import print_header, print_table, run_script
from omegaconf import OmegaConf


def epoch_seconds(run_dir: Path) -> list[float]:
    """Seconds between consecutive epoch ends, from the TensorBoard events of a DTL1 run."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = sorted((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    if not events:
        raise SystemExit(f"no TensorBoard events under {run_dir / 'tensorboard'}")
    times: list[float] = []
    for path in events:
        accumulator = EventAccumulator(str(path), size_guidance={"scalars": 0})
        accumulator.Reload()
        if "train/loss" in accumulator.Tags()["scalars"]:
            times += [event.wall_time for event in accumulator.Scalars("train/loss")]
    times.sort()
    return [later - earlier for earlier, later in zip(times, times[1:], strict=False)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm-repeats", type=int, default=3, help="warm demo runs (median reported)")
    parser.add_argument("--epochs", type=int, default=3, help="DTL1 epochs (no early stop before)")
    parser.add_argument("--threads", type=int, default=None, help="num_threads for train.py (default: torch's)")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a new temporary folder")
    parser.add_argument("overrides", nargs="*", help="extra train.py overrides for every run, e.g. trainer=gpu")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="facediag-bench-train-"))
    cache = workdir / "cache"
    extra = ([f"num_threads={args.threads}"] if args.threads else []) + args.overrides
    on_gpu = any(o.startswith("trainer=") and o != "trainer=cpu" for o in args.overrides)
    print_header("benchmarks/train.py: demo wall time (cold / warm cache) and DTL1 seconds per epoch",
                 device="cuda" if on_gpu else "cpu", torch_threads=args.threads, workdir=str(workdir),
                 warm_repeats=args.warm_repeats, dtl1_epochs=args.epochs,
                 overrides=" ".join(args.overrides) or "-")  # fmt: skip

    def demo(name: str, *more: str):
        run = run_script("train.py", f"paths.cache_dir={cache}", f"hydra.run.dir={workdir / name}", *extra, *more)
        run.check(f"train.py ({name})")
        return run, json.loads((workdir / name / "metrics.json").read_text())

    rows = []
    cold, metrics = demo("cold")
    rows.append({"run": "demo DTL2, cold cache", "wall s": cold.seconds, "in-job s": metrics["wall_time_s"],
                 "accuracy": metrics["accuracy"], "n_test": metrics["n_test"]})  # fmt: skip
    warm = [demo(f"warm{i}") for i in range(args.warm_repeats)]
    rows.append({"run": f"demo DTL2, warm cache (median of {len(warm)})",
                 "wall s": statistics.median(r.seconds for r, _ in warm),
                 "in-job s": statistics.median(m["wall_time_s"] for _, m in warm),
                 "accuracy": warm[0][1]["accuracy"], "n_test": warm[0][1]["n_test"]})  # fmt: skip
    dtl1, metrics = demo(
        "dtl1", "strategy=dtl1", f"strategy.max_epochs={args.epochs}", f"strategy.patience={args.epochs}"
    )
    gaps = epoch_seconds(workdir / "dtl1")
    batch_size = OmegaConf.load(workdir / "dtl1" / "run_config.yaml").data.batch_size
    rows.append({"run": f"DTL1 {args.epochs} epochs, warm cache", "wall s": dtl1.seconds,
                 "in-job s": metrics["wall_time_s"], "accuracy": metrics["accuracy"],
                 "n_test": metrics["n_test"]})  # fmt: skip
    print()
    print_table(rows)
    print(f"\nDTL1 (dlib_resnet, batch {batch_size}, n_train={metrics['n_train']}, n_val={metrics['n_val']}): "
          f"seconds per epoch (train + val + checkpoint) {', '.join(f'{g:.2f}' for g in gaps)}; "
          f"median {statistics.median(gaps):.2f} s")  # fmt: skip
    print("wall s: the whole `python train.py` process (imports, Hydra, job); in-job s: metrics.json wall_time_s")


if __name__ == "__main__":
    main()
