"""`python -m facediag.predict <image> [...] run=<run dir> [out=<folder>] [neighbours=<k>]`: classify new photos.

Writes each aligned crop next to the report, prints class probabilities (DTL1 softmax, DTL2
Platt-scaled SVM scores) and the top 3, and refuses with the reason when no face is found.
``neighbours=k`` also lists and draws the k most similar training photos (``facediag.neighbours``).
Research tool, not a diagnosis.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from facediag.results import DISCLAIMER

USAGE = "usage: python -m facediag.predict <image> [<image> ...] run=<run dir> [out=<folder>] [neighbours=<k>]"


def parse(argv: Sequence[str]) -> tuple[list[str], Path, Path]:
    """Images, run dir and output folder from `key=value` and positional arguments."""
    options = dict(a.split("=", 1) for a in argv if "=" in a and not os.path.exists(a))
    images = [a for a in argv if a not in {f"{k}={v}" for k, v in options.items()}]
    unknown = set(options) - {"run", "out", "neighbours"}
    if unknown or "run" not in options or not images:
        raise SystemExit(USAGE + (f"\nunknown option(s): {sorted(unknown)}" if unknown else ""))
    run_dir = Path(options["run"])
    return images, run_dir, Path(options.get("out", run_dir / "predictions_new"))


def predict(images: Sequence[str], run_dir: Path, out_dir: Path, neighbours: int = 0) -> int:
    """Print the probabilities of every image; return the number of images refused (no face, unreadable)."""
    from PIL import Image

    from facediag.inference import TrainedRun

    run = TrainedRun(run_dir)
    scored = run.score(images)
    out_dir.mkdir(parents=True, exist_ok=True)
    row = {path: i for i, path in enumerate(scored.paths)}
    refused = 0
    print(f"run {run_dir} ({run.cfg.backbone.name} / {run.cfg.weights.name} / {run.strategy}); {DISCLAIMER}")
    for result in scored.results:
        if result.path not in row or result.status != "ok":
            refused += 1
            reason = result.reason or ("no face found" if result.status in ("no_face", "center_crop") else "")
            print(f"\n{result.path}: refused ({result.status}): {reason}")
            continue
        i = row[result.path]
        crop_path = out_dir / f"{Path(result.path).stem}_aligned.png"
        Image.fromarray(scored.crops[i]).save(crop_path)
        probabilities = scored.probabilities[i]
        order = probabilities.argsort()[::-1]
        flag = f" (flagged: {result.fallback})" if result.fallback else ""
        print(f"\n{result.path}{flag}  aligned crop: {crop_path}")
        for rank, c in enumerate(order[:3], start=1):
            print(f"  top-{rank}: {run.classes[c]:<20} p={probabilities[c]:.3f}")
        print("  all: " + ", ".join(f"{run.classes[c]}={probabilities[c]:.3f}" for c in range(len(run.classes))))
    if neighbours:
        from facediag.neighbours import show_neighbours

        show_neighbours(run, scored.paths, scored.crops, neighbours, out_dir)
    print(f"\n{DISCLAIMER}")
    return refused


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    argv = sys.argv[1:] if argv is None else argv
    images, run_dir, out_dir = parse(argv)
    k = next((a.split("=", 1)[1] for a in argv if a.startswith("neighbours=")), "0")
    if not k.isdigit():
        raise SystemExit(f"{USAGE}\nneighbours must be a whole number, got {k!r}")
    return 1 if predict(images, run_dir, out_dir, int(k)) else 0


if __name__ == "__main__":
    sys.exit(main())
