"""The Disease-Specific Face (DSF) dataset of Jin, Cruz & Gonçalves (2020): one folder per class."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from facediag.data.folder import FolderDataset

DSF_CLASSES: dict[str, list[str]] = {
    "D1": ["beta-thalassemia", "beta thalassemia", "thalassemia", "beta-thalassaemia", "thalassaemia"],
    "D2": ["hyperthyroidism"],
    "D3": ["down syndrome", "down", "downs syndrome", "down's syndrome", "trisomy 21"],
    "D4": ["leprosy"],
    "N0": ["healthy", "healthy control", "normal", "control", "health"],
}
TASKS: dict[str, list[str]] = {"binary": ["N0", "D1"], "multiclass": ["D1", "D2", "D3", "D4", "N0"]}


class DSFDataset(FolderDataset):
    """DSF laid out as `<root>/<class>/<image>`; task `binary` (D1 vs N0, positive D1) or `multiclass`."""

    def __init__(
        self,
        root: str | os.PathLike,
        task: str = "binary",
        classes: Mapping[str, Sequence[str]] | None = None,
        positive: str | None = "D1",
        subjects_csv: str | os.PathLike | None = None,
        exclude: Sequence[str] | None = None,
        unknown: str | None = None,
    ):
        if task not in TASKS:
            raise ValueError(f"DSF task must be one of {sorted(TASKS)}, got {task!r}")
        super().__init__(
            root,
            classes=classes or DSF_CLASSES,
            include=TASKS[task],
            positive=positive if task == "binary" else None,
            subjects_csv=subjects_csv,
            name="DSF",
            exclude=exclude,
            unknown=unknown,
        )
        self.task = task
