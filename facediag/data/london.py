"""The Face Research Lab London Set (CC BY 4.0): real consented faces for demos, tests and benchmarks."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import pandas as pd

from facediag.core.download import DownloadError, download_verified
from facediag.core.status import EXCLUDED, OK
from facediag.data.records import Record

PINNED_COMMIT = "fa8b78fda2d659bb74ce62fcd99c4407551d2a77"
BASE_URL = f"https://raw.githubusercontent.com/debruine/webmorphR.stim/{PINNED_COMMIT}/"
CITATION = (
    "DeBruine, L., & Jones, B. (2017). Face Research Lab London Set (Version 5). figshare. "
    "https://doi.org/10.6084/m9.figshare.5047666.v5 (CC BY 4.0)"
)
EXPRESSIONS = {"neutral": "03", "smiling": "08"}
TASK_CLASSES = {
    "sex": ["female", "male"],
    "expression": ["neutral", "smiling"],
    "sex_expression": ["female_neutral", "female_smiling", "male_neutral", "male_smiling"],
}
DEFAULT_AGE_BANDS = [[18, 21], [22, 23], [24, 27], [28, 33], [34, 120]]


def pinned_checksums() -> dict[str, str]:
    """Local relative path → sha256 for every file of the set (shipped with the package)."""
    text = resources.files("facediag.data").joinpath("london_sha256sums.txt").read_text()
    pairs = (line.split(maxsplit=1) for line in text.splitlines() if line.strip())
    return {name.strip(): digest for digest, name in pairs}


def remote_path(local: str) -> str:
    """Where a local file of the set lives in the pinned upstream repository."""
    folder, _, name = local.rpartition("/")
    return {
        "neutral": f"inst/neutral_front/{name}",
        "landmarks": f"inst/neutral_front/{name}",
        "smiling": f"inst/smiling_front/{name}",
        "": {"london_info.csv": "data-raw/london_info.csv"}.get(name, name),
    }[folder]


def download_london(
    dest: str | os.PathLike, base_url: str = BASE_URL, files: Sequence[str] | None = None, timeout: float = 30.0
) -> Path:
    """Fetch the set (or ``files`` of it) from the pinned commit into ``dest``, checking every sha256."""
    dest = Path(dest)
    checksums = pinned_checksums()
    wanted = list(files) if files is not None else sorted(checksums)
    failures, fetched = [], 0
    for local in wanted:
        try:
            download_verified(
                base_url.rstrip("/") + "/" + remote_path(local), dest / local, checksums[local], timeout=timeout
            )
            fetched += 1
        except DownloadError as err:
            failures.append(str(err))
            if not fetched:
                break  # the very first file failed: offline or wrong URL, do not try hundreds more
    if failures:
        raise DownloadError(
            f"{len(failures)} of {len(wanted)} London-set files could not be fetched into {dest}.\n"
            f"Offline? Copy the folder 'london-faces' (see its README) to {dest} or set paths.data_dir.\n"
            + "\n".join(failures[:5])
        )
    return dest


def age_band(age: float | None, bands: Sequence[Sequence[float]]) -> str | None:
    """Name of the band `lo-hi` (inclusive) holding ``age``; None when unknown or outside every band."""
    if age is None or (isinstance(age, float) and math.isnan(age)):
        return None
    for lo, hi in bands:
        if lo <= age <= hi:
            return f"{lo}-{hi}"
    return None


class LondonFaces:
    """102 people × neutral/smiling; tasks `sex`, `expression`, `sex_expression`, `age` (bands from config)."""

    def __init__(
        self,
        root: str | os.PathLike,
        task: str = "sex",
        positive: str | None = None,
        age_bands: Sequence[Sequence[float]] = tuple(DEFAULT_AGE_BANDS),
        expressions: Sequence[str] = ("neutral", "smiling"),
        download: bool = True,
        base_url: str = BASE_URL,
    ):
        if task not in (*TASK_CLASSES, "age"):
            raise ValueError(f"London task must be one of {[*TASK_CLASSES, 'age']}, got {task!r}")
        self.root = Path(root).expanduser()
        self.task = task
        self.age_bands = [list(b) for b in age_bands]
        self.expressions = list(expressions)
        self.download = download
        self.base_url = base_url
        self.name = "london"
        self.positive = positive if positive is not None else (self.classes[-1] if len(self.classes) == 2 else None)

    @property
    def classes(self) -> list[str]:
        if self.task == "age":
            return [f"{lo}-{hi}" for lo, hi in self.age_bands]
        return TASK_CLASSES[self.task]

    def ensure_present(self) -> None:
        """Download the set when its folder is missing (and downloading is allowed)."""
        if (self.root / "london_info.csv").is_file():
            return
        if not self.download:
            raise FileNotFoundError(
                f"London set not found at {self.root}: copy the 'london-faces' folder there "
                "(or set paths.data_dir / data.root), or allow data.download=true."
            )
        download_london(self.root, self.base_url)

    def _label(self, person: pd.Series, expression: str) -> str | None:
        sex = person["face_gender"]
        if self.task == "sex":
            return sex
        if self.task == "expression":
            return expression
        if self.task == "sex_expression":
            return f"{sex}_{expression}"
        return age_band(pd.to_numeric(person["face_age"], errors="coerce"), self.age_bands)

    def records(self) -> list[Record]:
        """Both photos of every person; subject = the person's NNN; metadata sex, age, ethnicity, expression."""
        self.ensure_present()
        info = pd.read_csv(self.root / "london_info.csv", dtype=str, keep_default_na=False)
        records = []
        for _, person in info.iterrows():
            face_id = person["face_id"].zfill(3)
            age = pd.to_numeric(person["face_age"], errors="coerce")
            for expression in self.expressions:
                path = self.root / expression / f"{face_id}_{EXPRESSIONS[expression]}.jpg"
                label = self._label(person, expression)
                meta = {
                    "sex": person["face_gender"],
                    "age": None if math.isnan(age) else float(age),
                    "ethnicity": person["face_eth"],
                    "expression": expression,
                }
                status, reason = (
                    (OK, "") if label is not None else (EXCLUDED, f"no {self.task} label (age={person['face_age']!r})")
                )
                records.append(Record(str(path), label, face_id, meta, status, reason=reason))
        return records
