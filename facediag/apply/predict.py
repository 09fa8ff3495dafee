"""`python -m facediag.predict <photo|folder|glob> ... run=<run dir> [out=...] [tta=flip] [batch_size=N]`.

One photo: prints the class probabilities (DTL1 softmax, DTL2 Platt-scaled SVM, DSIFT softmax of the
SVM scores) and the top 3, saves the aligned crop, and refuses with the reason when no face is found; a flagged
photo is scored with a warning naming every flag.
A folder (searched recursively), a glob or several photos: one CSV row per file (``path, status, reason, flags,
top1, score_<class>..., p_<class>..., distance, distance_threshold, det_score, n_faces``; ``status`` ok / flagged /
center_crop / no_face / error / not_image / excluded, as in manifest.csv: :mod:`facediag.core.status`; ``flags`` the
codes of :mod:`facediag.apply.flags`, e.g. ``upsampled;out_of_distribution``; ``distance`` to the training photos,
:mod:`facediag.apply.distribution`), keeps going past bad files, shows a progress bar on stderr and scores the crops
in batches. ``checks=false`` skips the out-of-distribution and overlap checks (detection flags stay).
``neighbours=k`` also lists and draws the k most similar training photos (``facediag.apply.neighbours``).
Research tool, not a diagnosis.
"""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from facediag.core.errors import exit_on_user_error
from facediag.core.startup import pause_collection, resume_collection
from facediag.scoring.results import DISCLAIMER

# every key=value option: name -> help (add an option here and read it from `options` in predict())
OPTIONS: dict[str, str] = {
    "run": "the run dir of train.py (required)",
    "out": "a .csv file, or a folder for the CSV and the aligned crops (default <run>/predictions_new)",
    "tta": "flip: average the scores of each crop and its horizontal mirror (default none)",
    "batch_size": "crops per model batch (default 32)",
    "variant": "DSIFT: svm_linear or svm_chi2 (default: the run's first variant, as in its metrics.json)",
    "workers": "preprocessing processes for a folder (default min(CPU cores, 8))",
    "cache_dir": "where landmarks and crops are cached (default the run's cache)",
    "neighbours": "k: also list and draw the k most similar training photos (DTL1 / DTL2 runs; default 0)",
    "checks": "false: skip the out-of-distribution and training-overlap checks (default true)",
}
USAGE = "usage: python -m facediag.predict <photo|folder|glob> [...] run=<run dir> [key=value ...]\n" + "\n".join(
    f"  {name}=  {text}" for name, text in OPTIONS.items()
)
CSV_NAME = "predictions.csv"


def parse_arguments(argv: Sequence[str], allowed: Iterable[str], usage: str) -> tuple[list[str], dict[str, str]]:
    """Positional inputs (photos, folders, globs) and the `key=value` options of a facediag command line: an
    unknown option, a missing `run=` or no input exits with ``usage``. An existing file whose name holds '='
    is an input."""
    options: dict[str, str] = {}
    inputs: list[str] = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and not os.path.exists(arg) and key.isidentifier():
            options[key] = value
        else:
            inputs.append(arg)
    unknown = sorted(set(options) - set(allowed))
    if unknown or "run" not in options or not inputs:
        raise SystemExit(usage + (f"\nunknown option(s): {unknown}" if unknown else ""))
    return inputs, options


def parse(argv: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Positional inputs (photos, folders, globs) and the `key=value` options (checked against OPTIONS)."""
    return parse_arguments(argv, OPTIONS, USAGE)


def expand(inputs: Sequence[str]) -> tuple[list[str], list[tuple[str, str, str]]]:
    """(image files to score, [(path, status, reason)] of the others: broken links, hidden files, other
    extensions; facediag.core.status, as in manifest.csv); folders recursively, globs sorted.

    A name that is neither a file, a folder nor a glob with matches is kept: preprocessing reports it as not found.
    """
    from facediag.core.status import listing_status

    def below(folder: str) -> list[str]:
        return [str(p) for p in sorted(Path(folder).rglob("*")) if not p.is_dir()]

    found: list[str] = []
    for item in inputs:
        if os.path.isdir(item):
            found += below(item)
        elif not os.path.lexists(item) and glob.has_magic(item):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise SystemExit(f"{item}: the pattern matches no file")
            found += [m for m in matches if not os.path.isdir(m)]
            found += [path for m in matches if os.path.isdir(m) for path in below(m)]
        else:
            found.append(item)
    listed = {path: listing_status(path) for path in found if os.path.lexists(path)}
    others = [(path, *status) for path, status in listed.items() if status is not None]
    return [path for path in found if listed.get(path) is None], others


def output_paths(out: str | None, run_dir: Path) -> tuple[Path, Path]:
    """(folder for aligned crops, CSV file) from ``out=`` (a .csv file or a folder)."""
    out_path = Path(out) if out else run_dir / "predictions_new"
    if out_path.suffix.lower() == ".csv":
        return out_path.parent, out_path
    return out_path, out_path / CSV_NAME


def table(run: Any, photos: Sequence[Any], others: Sequence[tuple[str, str, str]]) -> Any:
    """One row per file (facediag.apply.assess.columns): the assessed photos, then the files never opened."""
    import pandas as pd

    from facediag.apply.assess import columns

    records = [photo.row() for photo in photos]
    records += [{"path": path, "status": status, "reason": reason} for path, status, reason in others]
    return pd.DataFrame.from_records(records, columns=columns(run.classes))


def print_one(run: Any, photos: Sequence[Any], crop_dir: Path) -> int:
    """Probabilities and top 3 of each scored photo (aligned crop saved), its flags in words; returns the number
    refused."""
    from PIL import Image

    refused = 0
    for photo in photos:
        if not photo.scored:
            refused += 1
            print(f"\n{photo.path}: refused ({photo.status}): {photo.reason}")
            continue
        crop_dir.mkdir(parents=True, exist_ok=True)
        crop_path = crop_dir / f"{Path(photo.path).stem}_aligned.png"
        Image.fromarray(photo.crop).save(crop_path)
        print(f"\n{photo.path}  ({photo.status})  aligned crop: {crop_path}")
        for words in photo.flag_words:
            print(f"  FLAGGED: {words}")
        if photo.flags:
            print("  the probabilities below are not to be read as a result for this photo")
        for rank, (name, p) in enumerate(list(photo.probabilities_by_class.items())[:3], start=1):
            print(f"  top-{rank}: {name:<20} p={p:.3f}")
        print("  all: " + ", ".join(f"{c}={p:.3f}" for c, p in zip(run.classes, photo.probabilities, strict=True)))
    return refused


def predict(inputs: Sequence[str], options: dict[str, str]) -> int:
    """Score the inputs with the run; exit status 1 when one photo is refused or no file of many could be scored."""
    from facediag.apply.assess import Assessor
    from facediag.apply.trained_run import TrainedRun
    from facediag.core.status import FLAGGED

    resume_collection()
    run_dir = Path(options["run"])
    neighbours = options.get("neighbours", "0")
    if not neighbours.isdigit():
        raise SystemExit(f"{USAGE}\nneighbours must be a whole number, got {neighbours!r}")
    neighbours = int(neighbours)
    run = TrainedRun(
        run_dir,
        variant=options.get("variant") or None,
        tta=options.get("tta") or None,
        batch_size=int(options.get("batch_size", 32)),
    )
    crop_dir, csv_path = output_paths(options.get("out"), run_dir)
    one = len(inputs) == 1 and os.path.isfile(inputs[0])
    images, others = expand(inputs)
    workers = int(options["workers"]) if options.get("workers") else None
    checks = options.get("checks", "true").lower()
    if checks not in ("true", "false"):
        raise SystemExit(f"{USAGE}\nchecks must be true or false, got {checks!r}")
    assessor = Assessor(run, check_distribution=checks == "true", check_overlap=checks == "true")
    scored = run.score(images, n_workers=1 if one else workers, cache_dir=options.get("cache_dir"), progress=not one)
    photos = assessor.assess_scored(scored)
    tta = f", tta={run.tta}" if run.tta else ""
    print(f"run {run_dir} ({run.description}{tta}); {DISCLAIMER}")
    if assessor.distribution_note():
        print(f"note: {assessor.distribution_note()}")
    if neighbours and scored.paths:
        from facediag.apply.neighbours import show_neighbours

        show_neighbours(run, scored.paths, scored.crops, neighbours, crop_dir)
    if one:
        refused = print_one(run, photos, crop_dir)
        if options.get("out", "").lower().endswith(".csv"):
            table(run, photos, others).to_csv(csv_path, index=False)
        print(f"\n{DISCLAIMER}")
        return 1 if refused else 0
    frame = table(run, photos, others)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(csv_path, index=False)
    counts = frame["status"].value_counts()
    print(f"{len(frame)} files: {len(scored.paths)} scored; " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    for _, bad in frame[frame["top1"].isna()].iterrows():
        print(f"  not scored: {bad['path']} ({bad['status']}): {bad['reason']}", file=sys.stderr)
    for _, flagged in frame[frame["status"] == FLAGGED].iterrows():
        print(f"  flagged: {flagged['path']}: {flagged['reason']}", file=sys.stderr)
    print(f"wrote {csv_path}\n{DISCLAIMER}")
    return 0 if len(scored.paths) else 1


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    inputs, options = parse(sys.argv[1:] if argv is None else argv)
    return predict(inputs, options)


if __name__ == "__main__":
    pause_collection()  # the command only, not a caller of main(): until torch is imported (facediag.core.startup)
    sys.exit(main())
