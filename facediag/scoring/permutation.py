"""Permutation tests of a whole pipeline: labels shuffled the way the people were sampled.

A headline accuracy is compared with the accuracies the *same pipeline* (split, preprocessing, choices
on validation, training, scoring) reaches on permuted labels. Photos of one person are not exchangeable
with other people's, so the labels are permuted at the level of people:

* ``by_person`` (a label of the person: sex, diagnosis): each person keeps one label for all their
  photos; the people's labels are shuffled among the people (the class sizes in people are kept).
* ``within_person`` (a state of the photo: expression): the labels of each person's photos are shuffled
  among that person's photos (every person keeps their own mix of classes).
* ``auto``: ``by_person`` when every person has one label, else ``within_person``.

The p-value counts the observed labelling as one of the permutations (Phipson & Smyth 2010):
``(1 + #{null >= observed}) / (1 + n_permutations)``, never 0. scipy's ``permutation_test`` has no
permutation within groups, hence these few functions; ``score`` can be any callable (the full pipeline).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BY_PERSON, WITHIN_PERSON, AUTO = "by_person", "within_person", "auto"
SCHEMES = (BY_PERSON, WITHIN_PERSON, AUTO)
PERMUTATIONS_DIR = "permutations"  # a run dir's permuted retrainings: permutations/<i>/predictions.csv

__all__ = [
    "AUTO",
    "BY_PERSON",
    "SCHEMES",
    "WITHIN_PERSON",
    "PERMUTATIONS_DIR",
    "PermutationResult",
    "permutation_of_run",
    "permutation_p_value",
    "permutation_scheme",
    "permutation_test",
    "permute_by_person",
    "permute_labels",
    "permute_within_person",
]


def _arrays(labels: Sequence[Any], subjects: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    labels_arr, subjects_arr = np.asarray(labels, dtype=object), np.asarray(subjects, dtype=object)
    if labels_arr.shape != subjects_arr.shape or labels_arr.ndim != 1:
        raise ValueError(f"permutation: labels and subjects must be equal 1-D arrays, got {labels_arr.shape} "
                         f"and {subjects_arr.shape}")
    return labels_arr, subjects_arr


def permutation_scheme(labels: Sequence[Any], subjects: Sequence[Any]) -> str:
    """``by_person`` when every person has a single label, else ``within_person``."""
    labels_arr, subjects_arr = _arrays(labels, subjects)
    per_person = {s: set() for s in subjects_arr}
    for label, subject in zip(labels_arr, subjects_arr, strict=True):
        per_person[subject].add(label)
    return BY_PERSON if all(len(v) == 1 for v in per_person.values()) else WITHIN_PERSON


def permute_by_person(labels: Sequence[Any], subjects: Sequence[Any], rng: np.random.Generator) -> np.ndarray:
    """The people's labels shuffled among the people; every photo gets its person's new label."""
    labels_arr, subjects_arr = _arrays(labels, subjects)
    people, first, person = np.unique(subjects_arr.astype(str), return_index=True, return_inverse=True)
    person_label = labels_arr[first]
    mixed = np.unique(person[labels_arr != person_label[person]])
    if mixed.size:
        raise ValueError(f"permute_by_person: {mixed.size} people have photos under several labels (e.g. "
                         f"{people[mixed[0]]!r}); permute within person for labels of a photo's state")
    return person_label[rng.permutation(len(people))][person]


def permute_within_person(labels: Sequence[Any], subjects: Sequence[Any], rng: np.random.Generator) -> np.ndarray:
    """Each person's labels shuffled among that person's photos."""
    labels_arr, subjects_arr = _arrays(labels, subjects)
    permuted = labels_arr.copy()
    _, person = np.unique(subjects_arr.astype(str), return_inverse=True)
    order = np.argsort(person, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(person[order]) != 0])
    for rows in np.split(order, starts[1:]):
        permuted[rows] = labels_arr[rows[rng.permutation(len(rows))]]
    return permuted


def permute_labels(
    labels: Sequence[Any], subjects: Sequence[Any], n_permutations: int, seed: int = 0, scheme: str = AUTO
) -> Iterator[np.ndarray]:
    """``n_permutations`` seeded permutations of ``labels`` by ``scheme`` (see the module docstring)."""
    if scheme not in SCHEMES:
        raise ValueError(f"permutation scheme must be one of {SCHEMES}, got {scheme!r}")
    if n_permutations < 1:
        raise ValueError(f"permutations must be >= 1, got {n_permutations}")
    if scheme == AUTO:
        scheme = permutation_scheme(labels, subjects)
    permute = permute_by_person if scheme == BY_PERSON else permute_within_person
    rng = np.random.default_rng(seed)
    for _ in range(n_permutations):
        yield permute(labels, subjects, rng)


def permutation_p_value(observed: float, null: Sequence[float], greater: bool = True) -> float:
    """``(1 + #{null >= observed}) / (1 + len(null))`` (``<=`` when ``greater`` is False)."""
    values = np.asarray(null, dtype=float)
    if values.ndim != 1 or values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError("permutation_p_value: need a non-empty 1-D array of finite null scores")
    extreme = values >= observed if greater else values <= observed
    return float((1 + int(extreme.sum())) / (1 + values.size))


@dataclass
class PermutationResult:
    """An observed score against the scores of the same pipeline on permuted labels."""

    observed: float
    null: list[float] = field(repr=False)
    p_value: float
    scheme: str
    seed: int

    @property
    def n_permutations(self) -> int:
        return len(self.null)

    def summary(self) -> str:
        null = np.asarray(self.null)
        return (f"permutation test ({self.n_permutations} permutations {self.scheme.replace('_', ' ')}, seed "
                f"{self.seed}): observed {self.observed:.3f}, permuted mean {null.mean():.3f} "
                f"(max {null.max():.3f}), p = {self.p_value:.3g}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly (metrics.json ``permutation``)."""
        return {"observed": self.observed, "p_value": self.p_value, "scheme": self.scheme, "seed": self.seed,
                "n_permutations": self.n_permutations, "null": list(self.null)}

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> PermutationResult:
        """The result :meth:`to_dict` wrote."""
        return cls(float(stored["observed"]), [float(v) for v in stored["null"]], float(stored["p_value"]),
                   str(stored["scheme"]), int(stored["seed"]))


def variant_test_accuracy(predictions: Any, variant: str) -> float:
    """Accuracy of one variant's test rows of a predictions.csv frame (against the labels it holds)."""
    test = predictions[(predictions["variant"] == variant) & (predictions["role"] == "test")]
    return float((test["pred"].astype(str) == test["label"].astype(str)).mean())


def permutation_of_run(run_dir: str | Path, predictions: Any, scheme: str, seed: int
                       ) -> dict[str, PermutationResult]:
    """{variant: the method's test accuracy against its permuted retrainings'} recomputed from the run's
    ``predictions`` and each ``permutations/<i>/predictions.csv`` (each holds its permuted labels); empty when the
    run has none."""
    import pandas as pd

    from facediag.scoring.results import TEXT_COLUMNS

    folder = Path(run_dir) / PERMUTATIONS_DIR
    files = sorted(folder.glob("*/predictions.csv"), key=lambda p: int(p.parent.name)) if folder.is_dir() else []
    if not files:
        return {}
    permuted = [pd.read_csv(f, dtype=TEXT_COLUMNS) for f in files]
    found = {}
    for variant in dict.fromkeys(predictions["variant"]):
        observed = variant_test_accuracy(predictions, variant)
        null = [variant_test_accuracy(p, variant) for p in permuted]
        found[variant] = PermutationResult(observed, null, permutation_p_value(observed, null), scheme, seed)
    return found


def permutation_test(
    score: Callable[[np.ndarray], float],
    labels: Sequence[Any],
    subjects: Sequence[Any],
    n_permutations: int,
    *,
    seed: int = 0,
    scheme: str = AUTO,
    observed: float | None = None,
) -> PermutationResult:
    """Run ``score(labels)`` on the true labels (unless ``observed`` is given) and on ``n_permutations``
    permutations; higher scores are better."""
    if scheme == AUTO:
        scheme = permutation_scheme(labels, subjects)
    actual = float(score(np.asarray(labels, dtype=object))) if observed is None else float(observed)
    null = [float(score(p)) for p in permute_labels(labels, subjects, n_permutations, seed, scheme)]
    return PermutationResult(actual, null, permutation_p_value(actual, null), scheme, seed)
