"""Uncertainty at the level of people, and paired comparisons of methods scored on the same test images.

* **Person-level intervals.** Photos of one person are correlated; resampling images as if they were
  independent makes intervals too narrow. When any person has more than one test image (within one CV
  repeat), accuracy, balanced accuracy, sensitivity, specificity and AUC get a percentile **cluster
  bootstrap** interval: people are drawn with replacement (``N_RESAMPLES`` = 2,000 resamples, seeded) and
  each image counts as often as its person was drawn (vectorised: one (resamples × images) weight matrix).
  Resamples in which a rate is undefined (no positives drawn) are left out of its interval.
* **A floor for proportions** (accuracy; binary sensitivity / specificity). Near 0 and 1 the percentile
  bootstrap is too narrow and not monotone (102 people × 2 photos: 0 errors would give [1, 1], 1 error
  [0.985, 1], 3 errors [0.966, 1]). So the interval is widened to contain the Wilson interval of the rate
  at the **effective number of people** of the images it counts, Kish's n_eff = (Σ m_i)² / Σ m_i² for
  m_i images of person i (the number of people when all have as many images; the people *of that class*
  for sensitivity / specificity). A rate over those images has at most the variance of n_eff independent
  trials (each person's share right lies in [0, 1]), so the Wilson bound is valid whatever the
  correlation within a person, and it falls strictly as errors are added (0 / 1 / 3 errors above:
  lower bounds 0.964 / 0.955 / 0.939). The price: where errors are independent within a person the
  floor, not the bootstrap, sets the bounds, about √(images per person) wider (102 × 2 photos, 0.81 right:
  [0.722, 0.873] instead of the bootstrap's [0.760, 0.858]). The method names what set
  the bounds: ``person bootstrap``, ``wilson (people)`` (the floor, both bounds) or ``person bootstrap,
  wilson (people) floor`` (one bound each).
* **One image per person**: accuracy and the binary sensitivity / specificity keep the Wilson score
  interval (``facediag.scoring.metrics.wilson_interval``; ``wilson``).
* **Balanced accuracy, AUC and the multiclass macro rates** are not proportions: they get the bootstrap
  only (people = images with one image per person), never a binomial interval. When every resample gives
  the same value (e.g. AUC 1 with every person separated) the interval is that point, marked
  ``person bootstrap (every resample alike)``: the bootstrap cannot say more.
* **Paired comparisons.** Two rows of a table scored on the same test images are compared per person:
  a person counts for method A when A classifies a larger fraction of that person's images (over all CV
  repeats) correctly than B, for B when smaller; McNemar's exact test (statsmodels) runs on those
  discordant people (a sign test; with one image per person it is McNemar's test on images). The
  accuracy difference A − B gets a paired person-bootstrap interval (the same people drawn for both).
  Several comparisons against one chosen row are Holm-adjusted (``holm``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import logsumexp
from scipy.stats import norm

N_RESAMPLES = 2000
SEED = 0
CONFIDENCE = 0.95
INTERVAL_METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "auc")
BOOTSTRAP, WILSON, WILSON_PEOPLE = "person bootstrap", "wilson", "wilson (people)"
FLOORED = "person bootstrap, wilson (people) floor"
DEGENERATE = "person bootstrap (every resample alike)"
PERSON_LEVEL_METHODS = (BOOTSTRAP, WILSON_PEOPLE, FLOORED)  # the methods of a proportion with repeated people

__all__ = [
    "wilson_interval",
    "class_ranking_scores",
    "effective_people",
    "N_RESAMPLES",
    "INTERVAL_METRICS",
    "PERSON_LEVEL_METHODS",
    "PairedComparison",
    "holm",
    "metric_intervals",
    "paired_comparison",
    "person_weights",
    "resampled_metrics",
]


def person_weights(groups: Sequence[Any], n_resamples: int = N_RESAMPLES, seed: int = SEED) -> np.ndarray:
    """(n_resamples, N) weights: how often each sample's person is drawn in each resample of the people."""
    _, person = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    n_people = int(person.max()) + 1
    draws = np.random.default_rng(seed).integers(0, n_people, size=(n_resamples, n_people))
    offsets = (np.arange(n_resamples) * n_people)[:, None]
    counts = np.bincount((draws + offsets).ravel(), minlength=n_resamples * n_people).reshape(n_resamples, n_people)
    return counts[:, person].astype(np.float64)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), np.nan)


def weighted_auc(weights: np.ndarray, is_positive: np.ndarray, ranking: np.ndarray) -> np.ndarray:
    """AUC per resample with integer sample weights (ties count one half), NaN where one class is missing."""
    order = np.argsort(ranking, kind="stable")
    sorted_scores = ranking[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    w = weights[:, order]
    positive = np.add.reduceat(w * is_positive[order], starts, axis=1)
    negative = np.add.reduceat(w * ~is_positive[order], starts, axis=1)
    below = np.cumsum(negative, axis=1) - negative
    return _ratio((positive * (below + 0.5 * negative)).sum(axis=1), positive.sum(axis=1) * negative.sum(axis=1))


def resampled_metrics(
    weights: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, ranking: np.ndarray, positive_index: int | None
) -> dict[str, np.ndarray]:
    """INTERVAL_METRICS per resample (rows of ``weights``), by facediag.scoring.metrics' rules (NaN where undefined).

    ``ranking``: (N, C) per-class ranking scores (``facediag.scoring.metrics.class_ranking_scores``).
    """
    n_classes = ranking.shape[1]
    total = weights.sum(axis=1)
    correct = weights @ (y_pred == y_true)
    is_true, is_pred = np.eye(n_classes)[y_true], np.eye(n_classes)[y_pred]
    true_w, pred_w, tp_w = weights @ is_true, weights @ is_pred, weights @ (is_true * is_pred)
    recall = _ratio(tp_w, true_w)
    specificity = _ratio(total[:, None] - true_w - pred_w + tp_w, total[:, None] - true_w)
    auc = np.stack([weighted_auc(weights, y_true == c, ranking[:, c]) for c in range(n_classes)], axis=1)
    with np.errstate(invalid="ignore"), _quiet_nanmean():
        result = {"accuracy": correct / total, "balanced_accuracy": np.nanmean(recall, axis=1)}
        if n_classes == 2:
            assert positive_index is not None
            result.update(sensitivity=recall[:, positive_index], specificity=specificity[:, positive_index],
                          auc=auc[:, positive_index])
        else:  # scikit-learn's macro set: classes present in y_true or predicted; zero_division=0
            in_set = (true_w > 0) | (pred_w > 0)
            result.update(
                sensitivity=np.nanmean(np.where(in_set, np.nan_to_num(recall), np.nan), axis=1),
                specificity=np.nanmean(np.where(in_set, np.nan_to_num(specificity), np.nan), axis=1),
                auc=np.nanmean(auc, axis=1),
            )
    return result


class _quiet_nanmean:
    """Silence numpy's 'Mean of empty slice' for resamples where a rate is undefined everywhere."""

    def __enter__(self) -> None:
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.filterwarnings("ignore", message="Mean of empty slice")

    def __exit__(self, *exc: Any) -> None:
        self._catch.__exit__(*exc)


def _percentile(values: np.ndarray, confidence: float) -> tuple[list[float] | None, bool]:
    """The percentile interval of the defined values, and whether the bootstrap distribution is a single point."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None, False
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return [float(low), float(high)], bool(values.min() == values.max())


def _repeat_slices(repeats: np.ndarray | None, n: int) -> list[np.ndarray]:
    if repeats is None:
        return [np.arange(n)]
    return [np.flatnonzero(repeats == r) for r in dict.fromkeys(repeats.tolist())]


def metric_intervals(
    y_true: np.ndarray,
    scores: np.ndarray,
    positive_index: int | None,
    groups: Sequence[Any] | None = None,
    repeats: Sequence[Any] | None = None,
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> tuple[dict[str, list[float] | None], dict[str, str]]:
    """95% intervals of INTERVAL_METRICS and the method of each (see the module docstring).

    ``groups``: the person of each sample (None: every sample its own person). ``repeats``: the CV repeat
    of each sample when the samples are several repeats' pooled predictions of the same images; the metric is
    then the mean over repeats, and every resample draws the same people for every repeat.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    n = y_true.size
    groups_arr = np.arange(n).astype(str) if groups is None else np.asarray(groups, dtype=str)
    repeats_arr = None if repeats is None else np.asarray(repeats)
    slices = _repeat_slices(repeats_arr, n)
    repeated_people = any(len(np.unique(groups_arr[s])) < len(s) for s in slices)
    y_pred = scores.argmax(axis=1)
    ranking = class_ranking_scores(scores)
    weights = person_weights(groups_arr, n_resamples, seed)
    per_repeat = [resampled_metrics(weights[:, s], y_true[s], y_pred[s], ranking[s], positive_index) for s in slices]
    intervals: dict[str, list[float] | None] = {}
    methods: dict[str, str] = {}
    for key in INTERVAL_METRICS:
        parts = _proportion_parts(key, y_true, y_pred, slices, positive_index, scores.shape[1])
        if parts is not None and not repeated_people:
            k, total = _mean_counts(parts)
            intervals[key] = list(wilson_interval(k, total, confidence)) if total > 0 else None
            methods[key] = WILSON
            continue
        with np.errstate(invalid="ignore"), _quiet_nanmean():
            values = np.nanmean(np.stack([r[key] for r in per_repeat]), axis=0) if len(slices) > 1 \
                else per_repeat[0][key]
        interval, degenerate = _percentile(values, confidence)
        if parts is None:  # balanced accuracy, AUC, multiclass macro rates: the bootstrap alone
            intervals[key], methods[key] = interval, DEGENERATE if degenerate else BOOTSTRAP
            continue
        intervals[key], methods[key] = _with_people_floor(interval, parts, groups_arr, slices, confidence)
    return intervals, methods


def _proportion_parts(
    key: str, y_true: np.ndarray, y_pred: np.ndarray, slices: list[np.ndarray], positive_index: int | None,
    n_classes: int,
) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Per repeat, (rows counted, rows right) of a proportion (accuracy; binary sensitivity / specificity);
    None for the other metrics."""
    if key == "accuracy":
        return [(np.ones(len(s), dtype=bool), y_pred[s] == y_true[s]) for s in slices]
    if key in ("sensitivity", "specificity") and n_classes == 2 and positive_index is not None:
        wanted = positive_index if key == "sensitivity" else 1 - positive_index
        return [(y_true[s] == wanted, (y_pred[s] == wanted) & (y_true[s] == wanted)) for s in slices]
    return None


def _mean_counts(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[int, int]:
    """(successes, n) of a proportion, the mean counts over repeats."""
    n = int(round(np.mean([mask.sum() for mask, _ in parts])))
    k = int(round(np.mean([hits.sum() for _, hits in parts])))
    return min(k, n), n


def effective_people(groups: Sequence[Any]) -> float:
    """Kish's effective number of people, (sum of images per person)^2 / sum of their squares.

    The number of people when everyone has as many images; fewer when a few people hold most images. A
    proportion over these images has at most the variance of ``effective_people`` independent trials.
    """
    _, counts = np.unique(np.asarray(groups, dtype=str), return_counts=True)
    return float(counts.sum() ** 2 / (counts.astype(float) ** 2).sum()) if counts.size else 0.0


def _with_people_floor(
    interval: list[float] | None, parts: list[tuple[np.ndarray, np.ndarray]], groups: np.ndarray,
    slices: list[np.ndarray], confidence: float,
) -> tuple[list[float] | None, str]:
    """The bootstrap interval widened to contain the Wilson interval of the rate at the effective number of
    people of its rows, and the method that set the bounds."""
    n_eff = float(np.mean([effective_people(groups[s][mask]) for s, (mask, _) in zip(slices, parts, strict=True)]))
    if n_eff <= 0:
        return interval, BOOTSTRAP
    rate = float(np.mean([hits.sum() / mask.sum() for mask, hits in parts if mask.any()]))
    floor = list(_wilson_bounds(rate, n_eff, confidence))
    if interval is None:
        return floor, WILSON_PEOPLE
    combined = [min(interval[0], floor[0]), max(interval[1], floor[1])]
    if combined == interval:
        return combined, BOOTSTRAP
    return combined, WILSON_PEOPLE if combined == floor else FLOORED


@dataclass
class PairedComparison:
    """Method A vs method B on the same test images (see the module docstring)."""

    unit: str  # "image" (one image per person) or "person"
    n_units: int
    n_a_better: int
    n_b_better: int
    p_value: float
    accuracy_difference: float  # A - B
    difference_ci: list[float]


def paired_comparison(
    correct_a: np.ndarray,
    correct_b: np.ndarray,
    groups: Sequence[Any],
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> PairedComparison:
    """McNemar's exact test on the people where A and B differ, and a paired person-bootstrap interval of
    the accuracy difference A − B. ``correct_*``: per image (rows aligned), whether the method was right."""
    from statsmodels.stats.contingency_tables import mcnemar

    correct_a = np.asarray(correct_a, dtype=bool)
    correct_b = np.asarray(correct_b, dtype=bool)
    if correct_a.shape != correct_b.shape or correct_a.ndim != 1 or correct_a.size == 0:
        raise ValueError(f"paired_comparison: need two equal, non-empty 1-D arrays, got {correct_a.shape} and "
                         f"{correct_b.shape}")
    groups_arr = np.asarray(groups, dtype=str)
    people, person = np.unique(groups_arr, return_inverse=True)
    size = np.bincount(person)
    share_a = np.bincount(person, weights=correct_a) / size
    share_b = np.bincount(person, weights=correct_b) / size
    a_better, b_better = int((share_a > share_b).sum()), int((share_a < share_b).sum())
    ties = len(people) - a_better - b_better
    p_value = 1.0 if a_better + b_better == 0 else float(
        mcnemar([[ties, a_better], [b_better, 0]], exact=True).pvalue)
    weights = person_weights(groups_arr, n_resamples, seed)
    differences = (weights @ (correct_a.astype(float) - correct_b)) / weights.sum(axis=1)
    interval, _ = _percentile(differences, confidence)
    assert interval is not None
    return PairedComparison(
        "person" if size.max() > 1 else "image", len(people), a_better, b_better, p_value,
        float(correct_a.mean() - correct_b.mean()), interval,
    )


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the given order: sorted ascending, the i-th (from 0) times m - i, made
    non-decreasing, capped at 1. The same values as statsmodels ``multipletests(method="holm")`` (checked in
    tests/test_stats.py), which runs a full ``gc.collect()`` per call: up to a second in a process holding torch."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(np.maximum.accumulate(p[order] * np.arange(p.size, 0, -1)), 1.0)
    return [float(value) for value in adjusted]


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval (no continuity correction) for a binomial proportion ``successes / n``."""
    if isinstance(successes, bool) or isinstance(n, bool):
        raise TypeError("wilson_interval: successes and n must be integers, not booleans")
    if int(successes) != successes or int(n) != n:
        raise ValueError(f"wilson_interval: successes={successes!r} and n={n!r} must be whole numbers")
    successes, n = int(successes), int(n)
    if n <= 0:
        raise ValueError(
            f"wilson_interval: n must be positive, got n={n} (no samples: the rate is undefined)"
        )
    if not 0 <= successes <= n:
        raise ValueError(f"wilson_interval: successes must be in [0, n={n}], got {successes}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"wilson_interval: confidence must be in (0, 1), got {confidence}")
    return _wilson_bounds(successes / n, n, confidence)


def _wilson_bounds(proportion: float, n: float, confidence: float) -> tuple[float, float]:
    """Wilson score bounds of ``proportion`` observed in ``n`` (possibly effective, non-integer) trials."""
    z = float(norm.ppf(0.5 + confidence / 2.0))
    z2_over_n = z * z / n
    centre = (proportion + z2_over_n / 2.0) / (1.0 + z2_over_n)
    spread = math.sqrt(max(0.0, proportion * (1.0 - proportion)) / n + z2_over_n / (4.0 * n))
    half_width = z * spread / (1.0 + z2_over_n)
    low = 0.0 if proportion <= 0.0 else max(0.0, centre - half_width)
    high = 1.0 if proportion >= 1.0 else min(1.0, centre + half_width)
    return low, high


def _are_probabilities(scores: np.ndarray) -> bool:
    return bool(np.all(scores >= 0.0) and np.allclose(scores.sum(axis=1), 1.0, rtol=0.0, atol=1e-6))


def class_ranking_scores(scores: np.ndarray) -> np.ndarray:
    """Per-class scores that order samples like the class probability (softmax log-odds otherwise)."""
    if _are_probabilities(scores):
        return scores
    columns = np.arange(scores.shape[1])
    return np.column_stack([scores[:, c] - logsumexp(scores[:, columns != c], axis=1) for c in columns])
