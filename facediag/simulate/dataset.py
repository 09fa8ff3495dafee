"""``data=simulated``: a simulated tree as a training data set, made once per settings and cached.

The tree of a strength / seed (and the other simulation settings) lives in ``<cache>/<source>_s<strength>_seed<seed>_
<hash>`` (``data.root`` of ``conf/data/simulated.yaml``: ``<paths.cache_dir>/simulated``); the first run that asks
for it writes it (under a file lock: parallel jobs of a sweep wait for the one writing), every later run, fold and
method reads it. The runs then see a plain class-folder tree (:class:`~facediag.data.folder.FolderDataset`) with
its ``subjects.csv``; ``truth.csv`` and the masks stay beside it for the saliency benchmark.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from facediag.data.folder import FolderDataset
from facediag.simulate.conditions import condition_names
from facediag.simulate.tree import Settings

#: the Settings fields that are the tree's name rather than its hash
NAMED = ("strength", "seed")


def tree_name(source: str, settings: Settings) -> str:
    """``london_s2_seed0_<8 hex>``: source, strength and seed in words, the other settings hashed."""
    rest = {k: v for k, v in asdict(settings).items() if k not in NAMED}
    rest["conditions"] = list(settings.conditions)
    digest = hashlib.sha1(json.dumps({"source": str(source), **rest}, sort_keys=True).encode()).hexdigest()[:8]
    label = "london" if source == "london" else Path(str(source)).name or "folder"
    return f"{label}_s{settings.strength:g}_seed{settings.seed}_{digest}"


def cached_tree(cache: str | os.PathLike, source: str, settings: Settings, london_root: str | os.PathLike,
                preprocess: object = None) -> Path:
    """The tree of ``settings`` under ``cache``, written first when it is not there (one writer at a time)."""
    from filelock import FileLock

    cache = Path(cache).expanduser()
    out = cache / tree_name(source, settings)
    if (out / "simulate.json").is_file():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if (out / "simulate.json").is_file():  # another job wrote it while this one waited
            return out
        from facediag.simulate.source import folder_faces, london_faces, measure_table
        from facediag.simulate.tree import build_tree

        if source == "london":
            faces, skipped = london_faces(london_root), None
        else:
            from hydra.utils import instantiate

            preprocessor = instantiate(preprocess) if isinstance(preprocess, Mapping) else preprocess
            faces, skipped = folder_faces(source, preprocessor)
        if out.exists() and not any(out.iterdir()):
            out.rmdir()
        build_tree(out, faces, measure_table(faces, settings.chosen(), cache.parent), settings, source)
        if skipped is not None and len(skipped):
            skipped.to_csv(out / "skipped.csv", index=False)
    return out


class SimulatedDataset(FolderDataset):
    """The class-folder tree of a simulated condition benchmark (``conf/data/simulated.yaml``), written into
    ``cache`` on first use; its ``subjects.csv`` names the people."""

    def __init__(
        self,
        cache: str | os.PathLike,
        strength: float = 1.0,
        seed: int = 0,
        source: str = "london",
        london_root: str | os.PathLike = "",
        conditions: str | Sequence[str] = ("hypertelorism", "midface", "micrognathia", "skin_tone"),
        jitter: float = 0.3,
        people: int | None = None,
        preprocess: object = None,
        classes: Sequence[str] | None = None,
        positive: str | None = None,
        exclude: Sequence[str] | None = None,
        name: str = "simulated",
    ):
        settings = Settings(strength=float(strength), seed=int(seed), conditions=condition_names(conditions),
                            jitter=float(jitter), people=None if people is None else int(people))
        self.settings = settings
        self.tree = cached_tree(cache, str(source), settings, london_root, preprocess)
        super().__init__(self.tree, classes=classes, positive=positive, subjects_csv=self.tree / "subjects.csv",
                         name=name, exclude=exclude)
