"""Fusing the features of several pretrained backbones (fused DTL2): block scaling or score stacking.

Feature blocks (one per backbone × weights source, concatenated column-wise in source order) are
combined by one of three rules, all ending in linear SVMs:

- ``concat``: plain concatenation, every column z-scored (the larger block dominates: 1280 ImageNet
  columns drown 128 identity columns);
- ``block_scaled``: every column z-scored, then every block scaled so that its total variance (the
  sum of its column variances on the training part) is the same for all blocks (:class:`BlockScaler`),
  then one linear SVM;
- ``stacked``: one linear SVM per block (its C by person-grouped CV), their out-of-fold decision
  values (person-grouped inner CV) feed a logistic regression.

:func:`choose_rule` picks the rule with the best person-grouped CV accuracy on the training part
(ties: the earlier rule in the list). With ``select_sources`` the candidates also include stacking over
every subset of two or more sources and every source's own SVM (their CV accuracies come from the same
out-of-fold decision values, so the selection costs no extra SVM fits): the inner CV chooses which
sources take part as well as the rule. The fitted model holds scikit-learn types only (the block scaler
is saved as an equivalent ``StandardScaler``), so skops loads it like any DTL2 SVM.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import StackingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils.validation import check_is_fitted, validate_data

from facediag.classifiers.svm import person_folds, select_svm

RULES = ("concat", "block_scaled", "stacked")


def block_slices(blocks: Sequence[int]) -> list[slice]:
    """Column slices of consecutive blocks of the given sizes."""
    ends = np.cumsum([int(b) for b in blocks])
    return [slice(int(end - size), int(end)) for size, end in zip(blocks, ends, strict=True)]


class BlockScaler(TransformerMixin, BaseEstimator):
    """Z-score every column (``per_feature``; else only centre), then scale each block of columns so that
    every block has the same total variance on the fitted data (``1`` each: a block's columns share its vote).

    ``blocks`` are the sizes of consecutive column blocks (e.g. ``[128, 1280]``); the default ``None`` is one
    block of every column. A block with no variance is left unscaled.
    """

    def __init__(self, blocks: Sequence[int] | None = None, per_feature: bool = True):
        self.blocks = blocks
        self.per_feature = per_feature

    def fit(self, X: np.ndarray, y: Any = None) -> BlockScaler:
        X = validate_data(self, X, dtype=np.float64)
        blocks = [X.shape[1]] if self.blocks is None else [int(b) for b in self.blocks]
        if sum(blocks) != X.shape[1]:
            raise ValueError(f"BlockScaler: blocks {blocks} do not add up to {X.shape[1]} columns")
        self.mean_ = X.mean(axis=0)
        std = X.std(axis=0) if self.per_feature else np.ones(X.shape[1])
        std[std == 0] = 1.0
        standardised_var = X.var(axis=0) / std**2
        scale = std.copy()
        for columns in block_slices(blocks):
            total = float(standardised_var[columns].sum())
            if total > 0:
                scale[columns] *= np.sqrt(total)
        self.scale_ = scale
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "scale_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return (X - self.mean_) / self.scale_

    def as_standard_scaler(self) -> StandardScaler:
        """A fitted scikit-learn StandardScaler that computes the same transform (for skops)."""
        scaler = StandardScaler()
        scaler.mean_, scaler.scale_, scaler.var_ = self.mean_.copy(), self.scale_.copy(), self.scale_**2
        scaler.n_features_in_, scaler.n_samples_seen_ = self.n_features_in_, 1
        return scaler


def linear_svm(scaler: Any) -> Pipeline:
    return Pipeline([("scale", scaler), ("svm", SVC(kernel="linear"))])


def source_svm(columns: slice) -> Pipeline:
    """A linear SVM on one block's z-scored columns (the column selection is part of the pipeline)."""
    select = ColumnTransformer([("block", "passthrough", columns)])
    return Pipeline([("select", select), ("scale", StandardScaler()), ("svm", SVC(kernel="linear"))])


def grouped_splits(y: np.ndarray, groups: np.ndarray, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Person-grouped stratified folds (as select_svm makes them): a person never on both sides."""
    groups = np.asarray(groups)
    return list(person_folds(y, groups, n_folds, seed).split(np.zeros(len(y)), y, groups))


@dataclass
class SourceFit:
    """One source's linear SVM over the person-grouped folds: the chosen C (best mean fold accuracy, the
    first on ties, as select_svm), every C's accuracy and the out-of-fold decision values at that C."""

    C: float
    cv_accuracy: dict[float, float]
    out_of_fold: np.ndarray


def source_fits(
    X: np.ndarray, y: np.ndarray, blocks: Sequence[int], C_grid: Sequence[float],
    splits: list[tuple[np.ndarray, np.ndarray]],
) -> list[SourceFit]:
    """Per block and C, one fit per fold: the C choice and the stacking's level-1 features in one pass."""
    fits = []
    for columns in block_slices(blocks):
        Z = X[:, columns]
        best: SourceFit | None = None
        accuracy: dict[float, float] = {}
        for C in (float(c) for c in C_grid):
            out_of_fold, scores = None, []
            for train, test in splits:
                svm = linear_svm(StandardScaler()).set_params(svm__C=C).fit(Z[train], y[train])
                decision = svm.decision_function(Z[test]).reshape(len(test), -1)
                if out_of_fold is None:
                    out_of_fold = np.zeros((len(y), decision.shape[1]))
                out_of_fold[test] = decision
                scores.append(float(np.mean(svm.predict(Z[test]) == y[test])))
            accuracy[C] = float(np.mean(scores))
            if best is None or accuracy[C] > max(best.cv_accuracy.values()):
                best = SourceFit(C, dict(accuracy), out_of_fold)
        assert best is not None
        best.cv_accuracy = accuracy
        fits.append(best)
    return fits


@dataclass
class Stacked:
    """A fitted stacking model, its person-grouped CV accuracy and the per-source fits behind it."""

    estimator: StackingClassifier
    cv_accuracy: float
    sources: list[SourceFit]


def stacking(blocks: Sequence[int], source_C: Sequence[float], splits: list[tuple[np.ndarray, np.ndarray]],
             chosen: Sequence[int] | None = None) -> StackingClassifier:
    """Per-source linear SVMs (given Cs) stacked by a logistic regression on out-of-fold decision values;
    ``chosen``: the indices of the sources that take part (default all)."""
    slices = block_slices(blocks)
    chosen = range(len(slices)) if chosen is None else chosen
    estimators = [(f"source{i}", source_svm(slices[i]).set_params(svm__C=float(source_C[i]))) for i in chosen]
    return StackingClassifier(estimators, final_estimator=LogisticRegression(max_iter=1000), cv=splits,
                              stack_method="decision_function")


def level1_accuracy(sources: Sequence[SourceFit], y: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]]
                    ) -> float:
    """Person-grouped CV accuracy of a logistic regression on the sources' out-of-fold decision values."""
    level1 = np.hstack([s.out_of_fold for s in sources])
    return float(np.mean([np.mean(LogisticRegression(max_iter=1000).fit(level1[train], y[train]).predict(level1[test])
                                  == y[test]) for train, test in splits]))


def fit_stacked(
    X: np.ndarray, y: np.ndarray, groups: np.ndarray, blocks: Sequence[int], C_grid: Sequence[float],
    n_folds: int, seed: int,
) -> Stacked:
    """Per-source linear SVMs (C by person-grouped CV) stacked by a logistic regression on their
    out-of-fold decision values (the same person-grouped folds).

    CV accuracy: the logistic regression cross-validated on the sources' out-of-fold decision values, on the
    folds that chose the Cs (as the block-scaled SVM's C is chosen on the folds that score it). The level-1
    values are not re-nested inside each fold: a logistic regression on 2-8 decision values has little room
    to exploit that, and nesting costs five times the SVM fits.

    The folds are index lists of these rows: refit a clone only on the same rows (its logistic regression
    already gives probabilities, no Platt scaling on subsets needed).
    """
    splits = grouped_splits(y, groups, n_folds, seed)
    sources = source_fits(X, y, blocks, C_grid, splits)
    model = stacking(blocks, [s.C for s in sources], splits).fit(X, y)
    return Stacked(model, level1_accuracy(sources, y, splits), sources)


@dataclass
class FusionChoice:
    """The candidate chosen on validation (a rule, or with source selection a rule over some sources), its
    refitted model and what the choice saw."""

    rule: str
    estimator: Any
    cv_accuracy: dict[str, float]
    C: float | None
    source_C: list[float] = field(default_factory=list)
    source_cv_accuracy: list[float] = field(default_factory=list)
    chosen_sources: list[int] = field(default_factory=list)


def candidate_label(rule: str, subset: Sequence[int], names: Sequence[str]) -> str:
    """``rule`` over all sources; ``rule[name+name]`` over some of them; ``single[name]`` for one source."""
    if len(subset) == len(names):
        return rule
    if len(subset) == 1:
        return f"single[{names[subset[0]]}]"
    return f"{rule}[{'+'.join(names[i] for i in subset)}]"


def choose_rule(
    X: np.ndarray, y: np.ndarray, groups: Sequence[str], blocks: Sequence[int], rules: Sequence[str] = RULES,
    C_grid: Sequence[float] = (0.001, 0.01, 0.1, 1.0, 10.0), n_folds: int = 5, seed: int = 0,
    select_sources: bool = False, names: Sequence[str] | None = None,
) -> FusionChoice:
    """Score every candidate by person-grouped CV on the training part, refit the best one on all of it.

    Candidates: every rule over all sources; with ``select_sources`` also stacking over every subset of two or
    more sources (if ``stacked`` is a rule) and each source's own linear SVM (``single[name]``), scored from
    the per-source out-of-fold decision values already computed. Ties go to the earlier candidate: rules in the
    given order, then subsets from larger to smaller. ``names`` label the sources (default ``source<i>``).
    """
    unknown = sorted(set(rules) - set(RULES))
    if unknown or not rules:
        raise ValueError(f"fusion rules must be among {RULES}, got {list(rules)}")
    names = [f"source{i}" for i in range(len(blocks))] if names is None else [str(n) for n in names]
    if len(names) != len(blocks):
        raise ValueError(f"{len(names)} source names for {len(blocks)} blocks")
    groups = np.asarray(groups)
    splits = grouped_splits(y, groups, n_folds, seed)
    # always: besides the stacked rule they give each source's own C and CV accuracy (metrics.json `sources`)
    sources = source_fits(X, y, blocks, C_grid, splits)
    source_C = [s.C for s in sources]
    everyone = tuple(range(len(blocks)))
    subsets = [everyone]
    if select_sources:
        subsets += [c for k in range(len(blocks) - 1, 0, -1) for c in combinations(everyone, k)]
    refit: dict[str, Callable[[], tuple[Any, float | None]]] = {}
    accuracy: dict[str, float] = {}
    chosen: dict[str, tuple[int, ...]] = {}
    for rule in rules:
        if rule != "stacked":
            scaler = BlockScaler(blocks) if rule == "block_scaled" else StandardScaler()
            selected = select_svm(linear_svm(scaler), X, y, groups, C_grid, n_folds, seed, param="svm__C")
            estimator = selected.estimator
            if rule == "block_scaled":  # scikit-learn types only, for skops
                estimator = Pipeline([("scale", estimator.named_steps["scale"].as_standard_scaler()),
                                      ("svm", estimator.named_steps["svm"])])
            refit[rule] = lambda fitted=estimator, C=selected.C: (fitted, C)
            accuracy[rule], chosen[rule] = max(selected.cv_accuracy.values()), everyone
            continue
        for subset in (s for s in subsets if len(s) > 1):
            label = candidate_label(rule, subset, names)
            accuracy[label] = level1_accuracy([sources[i] for i in subset], y, splits)
            refit[label] = lambda subset=subset: (stacking(blocks, source_C, splits, subset).fit(X, y), None)
            chosen[label] = subset
    slices = block_slices(blocks)
    for (i,) in (s for s in subsets if len(s) == 1):
        label = candidate_label("single", (i,), names)
        accuracy[label] = max(sources[i].cv_accuracy.values())
        refit[label] = lambda i=i: (source_svm(slices[i]).set_params(svm__C=source_C[i]).fit(X, y), source_C[i])
        chosen[label] = (i,)
    order = list(accuracy)
    best = max(order, key=lambda c: (accuracy[c], -order.index(c)))
    estimator, C = refit[best]()
    return FusionChoice(best, estimator, accuracy, C, source_C, [max(s.cv_accuracy.values()) for s in sources],
                        list(chosen[best]))
