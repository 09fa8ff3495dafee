"""``python -m facediag.simulate out=<dir> source=london|<folder> strength=<SD> seed=<int>`` (conf/simulate.yaml).

``figure=<file.jpg>`` draws every condition at 1 and 3 SD on a London face instead of writing a tree.
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from omegaconf import DictConfig  # noqa: E402

from facediag.core.config import hydra_app  # noqa: E402


def capture_cue_text(value: Any) -> str | None:
    """``healthy:60,4`` from the command line: Hydra reads an unquoted comma as a sweep, so the brackets of
    ``capture_cue=[healthy:60,4]`` (a list) are accepted as well as a quoted string."""
    from omegaconf import ListConfig

    if value is None:
        return None
    return ",".join(str(v) for v in value) if isinstance(value, ListConfig | list | tuple) else str(value)


def run(cfg: DictConfig) -> None:
    """Write the tree (or the figure) that ``cfg`` asks for and print what was written."""
    import time
    from pathlib import Path

    from facediag.core.errors import UserError
    from facediag.simulate.conditions import condition_names
    from facediag.simulate.source import folder_faces, london_faces, measure_table
    from facediag.simulate.tree import Settings, build_tree, check_request

    settings = Settings(
        strength=float(cfg.strength), seed=int(cfg.seed), conditions=condition_names(cfg.conditions),
        jitter=float(cfg.jitter),
        rotation=float(cfg.pose.rotation), scale=float(cfg.pose.scale), shift=float(cfg.pose.shift),
        quality=int(cfg.quality), people=None if cfg.people is None else int(cfg.people),
        capture_cue=capture_cue_text(cfg.capture_cue),
    )  # fmt: skip
    if cfg.figure:
        conditions = settings.chosen()
    elif cfg.out is None:
        raise UserError("out=<folder> is required: where the simulated tree goes")
    else:  # every check that needs no face first: a wrong argument costs no minute of work
        conditions = check_request(Path(str(cfg.out)).expanduser(), settings)[0]
    start = time.perf_counter()
    source = str(cfg.source)
    if source == "london":
        faces, skipped = london_faces(cfg.london_root), None
    else:
        from hydra.utils import instantiate

        faces, skipped = folder_faces(source, instantiate(cfg.preprocess))
    table = measure_table(faces, conditions, cfg.paths.cache_dir)
    if cfg.figure:
        from facediag.simulate.figure import condition_figure

        path = condition_figure(faces, table, conditions, Path(str(cfg.figure)), str(cfg.figure_subject))
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} kB)")
        return
    truth = build_tree(str(cfg.out), faces, table, settings, source)
    if skipped is not None and len(skipped):
        skipped.to_csv(Path(str(cfg.out)) / "skipped.csv", index=False)
        print(f"{len(skipped)} source file(s) left out (no usable face): {Path(str(cfg.out)) / 'skipped.csv'}")
    seconds = time.perf_counter() - start
    counts = truth["class"].value_counts().reindex(["healthy", *settings.conditions]).fillna(0).astype(int)
    print(f"wrote {len(truth)} images of {len(faces)} source faces into {cfg.out} in {seconds:.0f} s: "
          + ", ".join(f"{c} {n}" for c, n in counts.items()))  # fmt: skip
    print(table[["condition", "measure", "mean", "sd"]].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"train on it: python train.py data=folder data.root={cfg.out} data.subjects_csv={cfg.out}/subjects.csv "
          "data.task=condition")  # fmt: skip


main = hydra_app("simulate", run)


if __name__ == "__main__":
    main()
