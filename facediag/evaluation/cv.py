"""Cross-validation: pool out-of-fold test predictions of runs that differ only by fold / split seed.

Per repeat (``data.split_seed``) the test predictions of its folds are concatenated: every image is
predicted once, by the model that did not see it, and every person sits in exactly one test fold (checked),
so people stay whole when the pooled predictions are resampled: intervals are person-level (cluster
bootstrap over people, Wilson with one image per person; facediag.scoring.stats). Over repeats: mean ± SD of the
pooled accuracies, the interval of the mean drawing the same people in every repeat. The confusion matrix
is row-normalised per fold (rows = true class) and averaged over every fold of every repeat.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from facediag.scoring.metrics import classification_metrics
from facediag.scoring.results import subjects_of, targets_and_scores
from facediag.scoring.stats import INTERVAL_METRICS, metric_intervals

# Keys that vary between the runs of one configuration: the fold, the split seed and machine-local settings
# (paths, threads, resuming, logging). Everything else, the training seed included, identifies the configuration.
IGNORED_KEYS = ("data.fold", "data.split_seed", "paths", "task_name", "num_threads", "ckpt_path",
                "prepare_only", "skip_completed", "logger", "hydra")
SUMMARY_KEYS = ("precision", "sensitivity", "specificity", "f1", "balanced_accuracy", "auc")


def configuration_key(config: Mapping[str, Any], ignored: Sequence[str] = IGNORED_KEYS) -> str:
    """A canonical string of ``config`` without the ``ignored`` dotted keys: equal for the folds of one setup."""
    return json.dumps(trimmed_config(config, ignored), sort_keys=True, default=str)


def trimmed_config(config: Mapping[str, Any], ignored: Sequence[str] = IGNORED_KEYS) -> dict[str, Any]:
    """A copy of ``config`` without the ``ignored`` dotted keys."""
    trimmed = copy.deepcopy(dict(config))
    for dotted in ignored:
        *parents, last = dotted.split(".")
        node: Any = trimmed
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    return trimmed


@dataclass(frozen=True)
class FoldPredictions:
    """The test predictions of one variant of one fold run (``source`` names it in error messages)."""

    fold: int
    split_seed: int
    predictions: pd.DataFrame
    source: str = ""


@dataclass
class PooledCV:
    """Pooled cross-validation results of one configuration and variant.

    ``repeats``: one row per split seed (n_folds, n, n_correct, accuracy with Wilson lo / hi, the other
    summary metrics of the pooled predictions); ``metrics``: classification_metrics per split seed;
    ``mean_confusion``: the fold-averaged row-normalised confusion matrix; ``summary``: the headline
    (see :func:`pool_folds`).
    """

    classes: list[str]
    positive: str | None
    repeats: pd.DataFrame
    pooled: dict[int, pd.DataFrame]
    metrics: dict[int, dict[str, Any]]
    mean_confusion: np.ndarray
    folds: list[FoldPredictions] = field(repr=False, default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def mean_accuracy(self) -> float:
        return float(self.repeats["accuracy"].mean())

    @property
    def sd_accuracy(self) -> float | None:
        """Sample SD of the pooled accuracy over repeats; None with a single repeat."""
        return float(self.repeats["accuracy"].std(ddof=1)) if len(self.repeats) > 1 else None


def row_normalised(confusion: np.ndarray) -> np.ndarray:
    """Each row divided by its total (rows = true class); NaN for a class absent from this fold."""
    confusion = np.asarray(confusion, dtype=np.float64)
    totals = confusion.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, confusion / totals, np.nan)


def _check_folds(folds: Sequence[FoldPredictions]) -> None:
    if not folds:
        raise ValueError("pool_folds: no fold predictions to pool")
    seen: dict[tuple[int, int], str] = {}
    for fold in folds:
        key = (fold.split_seed, fold.fold)
        if key in seen:
            raise ValueError(
                f"pool_folds: fold {fold.fold} of split seed {fold.split_seed} appears twice "
                f"({seen[key]} and {fold.source}): remove the duplicate run"
            )
        seen[key] = fold.source
        if fold.predictions.empty:
            raise ValueError(f"pool_folds: {fold.source or 'a fold'} has no test predictions")


def pool_folds(folds: Sequence[FoldPredictions], classes: Sequence[str], positive: str | None = None) -> PooledCV:
    """Pool the folds of each repeat and summarise.

    ``summary`` holds: n_repeats, n_folds (per repeat, the largest), n (images per repeat, the mean),
    n_people, accuracy (mean over repeats), accuracy_sd, the other SUMMARY_KEYS (means over repeats),
    person-level intervals ``<metric>_ci`` of the means with ``ci_methods`` / ``accuracy_ci_method``
    (facediag.scoring.stats.metric_intervals: repeats re-use the same people, so each resample draws the same
    people for every repeat; with one image per person, Wilson of the mean count at n = images per
    repeat) and per_class_accuracy.
    Raises ValueError when an image or a person is tested twice within a repeat (not out-of-fold).
    """
    classes = list(classes)
    _check_folds(folds)
    by_seed: dict[int, list[FoldPredictions]] = {}
    for fold in sorted(folds, key=lambda f: (f.split_seed, f.fold)):
        by_seed.setdefault(fold.split_seed, []).append(fold)
    rows, pooled, metrics = [], {}, {}
    for seed, seed_folds in by_seed.items():
        frame = pd.concat([f.predictions for f in seed_folds], ignore_index=True)
        repeated = frame["path"].duplicated(keep=False)
        if repeated.any():
            path = frame["path"][repeated].iloc[0]
            owners = [f.source or f"fold {f.fold}" for f in seed_folds if (f.predictions["path"] == path).any()]
            raise ValueError(
                f"pool_folds: {path} is a test image in several folds of split seed {seed} ({owners}): "
                "the runs are not folds of one cross-validation"
            )
        _check_people_in_one_fold(seed_folds, seed)
        y_true, scores = targets_and_scores(frame, classes)
        result = classification_metrics(y_true, scores, classes, positive, groups=subjects_of(frame))
        pooled[seed], metrics[seed] = frame, result
        rows.append(
            {
                "split_seed": seed,
                "n_folds": len(seed_folds),
                "folds": ",".join(str(f.fold) for f in seed_folds),
                "n": result["n"],
                "n_correct": result["n_correct"],
                "accuracy": result["accuracy"],
                "accuracy_lo": result["accuracy_ci"][0],
                "accuracy_hi": result["accuracy_ci"][1],
                **{key: result[key] for key in SUMMARY_KEYS},
            }
        )
    fold_matrices = []
    for fold in folds:
        y_true, scores = targets_and_scores(fold.predictions, classes)
        confusion = classification_metrics(y_true, scores, classes, positive, intervals_wanted=False)
        fold_matrices.append(row_normalised(np.asarray(confusion["confusion_matrix"])))
    with np.errstate(invalid="ignore"):
        stacked = np.stack(fold_matrices)
        counts = np.isfinite(stacked).sum(axis=0)
        mean_confusion = np.where(counts > 0, np.nansum(stacked, axis=0) / np.maximum(counts, 1), np.nan)
    result = PooledCV(classes, positive, pd.DataFrame(rows), pooled, metrics, mean_confusion, list(folds))
    result.summary = _summary(result)
    return result


def _check_people_in_one_fold(folds: Sequence[FoldPredictions], seed: int) -> None:
    """A person is tested in exactly one fold of a repeat: pooled intervals resample whole people."""
    owner: dict[str, str] = {}
    for fold in folds:
        if "subject" not in fold.predictions.columns:
            return
        for subject in set(fold.predictions["subject"].dropna().astype(str)):
            name = fold.source or f"fold {fold.fold}"
            if owner.setdefault(subject, name) != name:
                raise ValueError(
                    f"pool_folds: person {subject} is tested in several folds of split seed {seed} "
                    f"({owner[subject]} and {name}): the folds are not person-grouped"
                )


def _mean(values: Sequence[float | None]) -> float | None:
    defined = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(defined)) if defined else None


def _summary(cv: PooledCV) -> dict[str, Any]:
    repeats = cv.repeats
    n_repeats = len(repeats)
    n = int(repeats["n"].iloc[0]) if n_repeats == 1 else int(round(repeats["n"].mean()))
    frames = list(cv.pooled.values())
    stacked = pd.concat(frames, ignore_index=True)
    y_true, scores = targets_and_scores(stacked, cv.classes)
    positive_index = cv.classes.index(cv.positive) if cv.positive is not None else (1 if len(cv.classes) == 2
                                                                                    else None)
    repeat_of = np.repeat(np.arange(len(frames)), [len(f) for f in frames])
    intervals, methods = metric_intervals(y_true, scores, positive_index, subjects_of(stacked), repeat_of)
    per_class = {
        c: _mean([m["per_class"][c]["accuracy"] for m in cv.metrics.values()]) for c in cv.classes
    }
    return {
        "n_repeats": n_repeats,
        "n_folds": int(repeats["n_folds"].max()),
        "n": n,
        "n_people": int(stacked["subject"].nunique()) if "subject" in stacked.columns else None,
        "accuracy": cv.mean_accuracy,
        "accuracy_sd": cv.sd_accuracy,
        "accuracy_ci": intervals["accuracy"],
        "accuracy_ci_method": methods["accuracy"],
        **{key: _mean(repeats[key].tolist()) for key in SUMMARY_KEYS},
        **{f"{key}_ci": intervals[key] for key in INTERVAL_METRICS if key != "accuracy"},
        "ci_methods": methods,
        "per_class_accuracy": per_class,
    }
