"""Read a training run dir (the run-dir contract in docs/architecture.md) and find run dirs in a sweep."""

from __future__ import annotations

import glob
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from facediag.core.errors import UserError
from facediag.scoring.results import RUN_CONFIG, TEXT_COLUMNS, score_columns
from facediag.strategies.registry import uses_backbone

PREDICTIONS = "predictions.csv"
FAILED = "FAILED"
REQUIRED_PREDICTION_COLUMNS = ("path", "label", "role", "variant")
SCORE_PREFIX = "score_"
# What classification_metrics computes: recomputed from predictions.csv, never copied from metrics.json.
PERFORMANCE_KEYS = frozenset(
    {
        "n", "n_correct", "accuracy", "accuracy_ci", "precision", "sensitivity", "specificity", "f1",
        "balanced_accuracy", "auc", "top1_error", "top3_error", "confusion_matrix", "per_class",
    }
)
# controls and the permutation test belong to the predictions they were computed beside (the run's own test split):
# evaluate.py recomputes them from their folders, never copies them onto other predictions (external validation)
NOT_INFO_KEYS = PERFORMANCE_KEYS | {"variant", "variants", "disclaimer", "controls", "permutation"}


class RunDirError(UserError, ValueError):
    """A run dir (or one of its files) cannot be evaluated; the message names the file and the reason."""


@dataclass
class Run:
    """One training run: its composed config, predictions, manifest, split and stored metrics.

    ``failure`` holds the FAILED file's text when the job failed (then predictions may be None).
    """

    path: Path
    config: dict[str, Any]
    predictions: pd.DataFrame | None = None
    manifest: pd.DataFrame | None = None
    split: pd.DataFrame | None = None
    stored_metrics: dict[str, Any] | None = None
    failure: str | None = None
    classes: list[str] = field(default_factory=list)
    positive: str | None = None

    @property
    def failed(self) -> bool:
        return self.failure is not None

    @property
    def failure_reason(self) -> str:
        """The last non-empty line of the FAILED text (a traceback ends with the exception)."""
        lines = [line.strip() for line in (self.failure or "").splitlines() if line.strip()]
        return lines[-1] if lines else "failed (empty FAILED file)"

    @property
    def variants(self) -> list[str]:
        if self.predictions is None:
            return []
        return list(dict.fromkeys(self.predictions["variant"]))

    def setting(self, dotted: str, default: Any = None) -> Any:
        """A config value by dotted key (``data.task``), ``default`` when absent."""
        return get_dotted(self.config, dotted, default)

    def describe(self) -> dict[str, Any]:
        """What ran: dataset, task, backbone, weights, strategy, fold, split_seed."""
        stored = self.stored_metrics or {}
        strategy = stored.get("strategy", self.setting("strategy.name"))
        uses_cnn = uses_backbone(self.setting("strategy", {}) or {"name": strategy})
        return {
            "dataset": stored.get("dataset", self.setting("data.name")),
            "task": stored.get("task", self.setting("data.task")),
            "backbone": stored.get("backbone", self.setting("backbone.name") if uses_cnn else None),
            "weights": stored.get("weights", self.setting("weights.name") if uses_cnn else None),
            "strategy": strategy,
            "fold": self.setting("data.fold"),
            "split_seed": self.setting("data.split_seed"),
        }

    def info(self) -> dict[str, Any]:
        """Config-derived keys of metrics.json (backbone, weights, macs, ...): stored values, else the config's."""
        stored = self.stored_metrics or {}
        info = {k: v for k, v in stored.items() if k not in NOT_INFO_KEYS}
        described = self.describe()
        for key in ("task", "dataset", "backbone", "weights", "strategy", "split_seed"):
            info.setdefault(key, described[key])
        info.setdefault("fold", described["fold"] if self.setting("data.split") == "kfold" else None)
        info["classes"], info["positive"] = list(self.classes), self.positive
        if self.split is not None:
            roles = self.split["role"].value_counts()
            for role in ("train", "val"):
                info.setdefault(f"n_{role}", int(roles.get(role, 0)))
        info.setdefault("macs", None)
        info.setdefault("params", None)
        return info


def get_dotted(config: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def _read_csv(path: Path, what: str) -> pd.DataFrame:
    """A run's CSV, its paths, people and classes as written (``TEXT_COLUMNS``)."""
    try:
        return pd.read_csv(path, keep_default_na=True, dtype=TEXT_COLUMNS)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise RunDirError(f"{path}: cannot read the {what} ({type(err).__name__}: {err})") from err


def read_config(run_dir: Path) -> dict[str, Any]:
    """``.hydra/config.yaml`` as a plain dict, interpolations left unresolved (they name machine paths).

    Runs started without Hydra's runtime (``facediag.training.train`` called from Python) have only the
    resolved ``run_config.yaml``, which is read instead.
    """
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        path = run_dir / RUN_CONFIG
    if not path.is_file():
        raise RunDirError(f"{run_dir}: neither .hydra/config.yaml nor {RUN_CONFIG} (not a training run dir)")
    try:
        config = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception as err:  # OmegaConf raises several YAML / grammar error types
        raise RunDirError(f"{path}: cannot parse the config ({type(err).__name__}: {err})") from err
    if not isinstance(config, dict):
        raise RunDirError(f"{path}: expected a mapping at the top level")
    return config


def classes_of(predictions: pd.DataFrame) -> list[str]:
    """Class names in class order, from the ``score_<class>`` columns."""
    return [c[len(SCORE_PREFIX):] for c in predictions.columns if c.startswith(SCORE_PREFIX)]


def check_predictions(predictions: pd.DataFrame, classes: Sequence[str], source: str) -> pd.DataFrame:
    """Validate a predictions table against the contract; return it with ``path``/``label`` as str."""
    missing = [c for c in REQUIRED_PREDICTION_COLUMNS if c not in predictions.columns]
    if missing:
        raise RunDirError(f"{source}: missing column(s) {missing} (have {list(predictions.columns)})")
    found = classes_of(predictions)
    if len(found) < 2:
        raise RunDirError(f"{source}: needs one score_<class> column per class (at least 2), found {found}")
    if list(classes) != found:
        raise RunDirError(f"{source}: score columns {found} do not match the run's classes {list(classes)}")
    if predictions.empty:
        raise RunDirError(f"{source}: no rows")
    frame = predictions.copy()
    frame["path"] = frame["path"].astype(str)
    unknown = sorted(set(frame["label"].dropna().astype(str)) - set(classes))
    if frame["label"].isna().any() or unknown:
        raise RunDirError(f"{source}: labels {unknown or ['<empty>']} are not among the classes {list(classes)}")
    frame["label"] = frame["label"].astype(str)
    scores = frame[score_columns(classes)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    if not np.isfinite(scores).all():
        bad = frame["path"][~np.isfinite(scores).all(axis=1)].head(3).tolist()
        raise RunDirError(f"{source}: empty, non-numeric or infinite scores (e.g. rows for {bad})")
    frame[score_columns(classes)] = scores
    duplicated = frame.duplicated(["path", "role", "variant"])
    if duplicated.any():
        raise RunDirError(
            f"{source}: {int(duplicated.sum())} duplicate (path, role, variant) rows, "
            f"e.g. {frame['path'][duplicated].iloc[0]}"
        )
    return frame


def _positive(stored: Mapping[str, Any], config: Mapping[str, Any], classes: Sequence[str]) -> str | None:
    positive = stored.get("positive", get_dotted(config, "data.positive"))
    if positive is None or (isinstance(positive, float) and math.isnan(positive)):
        return classes[-1] if len(classes) == 2 else None
    if positive not in classes:
        raise RunDirError(f"positive class {positive!r} is not one of the classes {list(classes)}")
    return str(positive)


def load_run(run_dir: str | Path, predictions: pd.DataFrame | None = None) -> Run:
    """Load a run dir; ``predictions`` (same columns as predictions.csv) replaces the run's own file.

    A failed run (FAILED file) loads without predictions; anything else unreadable raises RunDirError.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise RunDirError(f"{path}: not a directory")
    config = read_config(path)
    failed_file = path / FAILED
    if failed_file.is_file() and predictions is None:
        return Run(path, config, failure=failed_file.read_text(errors="replace"))
    stored = None
    metrics_file = path / "metrics.json"
    if metrics_file.is_file():
        try:
            stored = json.loads(metrics_file.read_text())
        except (OSError, ValueError) as err:
            raise RunDirError(f"{metrics_file}: cannot read ({err})") from err
    if predictions is None:
        file = path / PREDICTIONS
        if not file.is_file():
            raise RunDirError(f"{file}: missing (the run has neither predictions nor a FAILED file)")
        predictions, source = _read_csv(file, "predictions"), str(file)
    else:
        source = "the predictions passed to evaluate_run"
    classes = list((stored or {}).get("classes") or classes_of(predictions))
    predictions = check_predictions(predictions, classes, source)
    try:
        positive = _positive(stored or {}, config, classes)
    except RunDirError as err:
        raise RunDirError(f"{path}: {err}") from err
    manifest = _read_csv(path / "manifest.csv", "manifest") if (path / "manifest.csv").is_file() else None
    split = _read_csv(path / "split.csv", "split") if (path / "split.csv").is_file() else None
    return Run(path, config, predictions, manifest, split, stored, None, classes, positive)


def _is_training_run(directory: Path) -> bool:
    if not ((directory / PREDICTIONS).is_file() or (directory / FAILED).is_file()):
        return False
    config = directory / ".hydra" / "config.yaml"
    if not config.is_file():
        return False
    try:
        return OmegaConf.load(config).get("task_name") != "evaluate"
    except Exception:
        return True  # unreadable config: load_run reports it as a failed row


def find_run_dirs(spec: str | Path | Sequence[str | Path]) -> list[Path]:
    """Run dirs under a dir, a glob, or a list of them: every folder holding predictions.csv or FAILED.

    Evaluation outputs (task_name: evaluate) are skipped. Raises FileNotFoundError when nothing matches.
    """
    specs = [spec] if isinstance(spec, (str, Path)) else list(spec)
    roots: list[Path] = []
    for item in specs:
        text = str(item)
        matches = sorted(glob.glob(text, recursive=True)) if glob.has_magic(text) else [text]
        if not matches or not all(Path(m).exists() for m in matches):
            raise FileNotFoundError(f"sweep: {text} matches no existing folder")
        roots.extend(Path(m) for m in matches)
    found: dict[Path, None] = {}
    for root in roots:
        candidates = [root] if root.is_dir() else []
        candidates += [p.parent for name in (PREDICTIONS, FAILED) for p in root.rglob(name)] if root.is_dir() else []
        for directory in sorted(set(candidates)):
            if _is_training_run(directory):
                found[directory.resolve()] = None
    if not found:
        raise FileNotFoundError(f"sweep: no run dirs (folders with {PREDICTIONS} or {FAILED}) under {specs}")
    return sorted(found)
