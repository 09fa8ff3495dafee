"""Fusion rules of fused DTL2: block scaling, score stacking, the choice on person-grouped CV."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.pipeline import Pipeline
from sklearn.svm import SVC

from facediag.classifiers.fusion import BlockScaler, choose_rule, fit_stacked


def two_blocks(n_people: int = 30, seed: int = 0, informative: bool = True):
    """A small informative block (8 columns, small scale) and a large noisy block (400 columns, large scale);
    two photos per person, both with the person's label."""
    rng = np.random.default_rng(seed)
    y_person = np.arange(n_people) % 2
    y = np.repeat(y_person, 2)
    groups = np.repeat([f"p{i}" for i in range(n_people)], 2)
    small = rng.normal(0, 0.1, (2 * n_people, 8)) + (0.12 * y[:, None] if informative else 0.0)
    large = rng.normal(0, 50.0, (2 * n_people, 400))
    return np.hstack([small, large]), y, groups


def test_block_scaler_gives_every_block_the_same_total_variance():
    X, _, _ = two_blocks()
    X[:, 3] = 7.0  # a constant column is left alone (no division by zero)
    Z = BlockScaler([8, 400]).fit_transform(X)
    assert np.isfinite(Z).all()
    totals = [Z[:, :8].var(axis=0).sum(), Z[:, 8:].var(axis=0).sum()]
    np.testing.assert_allclose(totals, [1.0, 1.0], rtol=1e-9)
    np.testing.assert_allclose(Z.mean(axis=0), 0.0, atol=1e-9)
    # within a block every non-constant column carries the same variance (per-feature z-scores)
    variances = Z[:, 8:].var(axis=0)
    np.testing.assert_allclose(variances, variances[0], rtol=1e-9)


def test_block_scaler_without_per_feature_scaling_keeps_variance_ratios_inside_a_block():
    rng = np.random.default_rng(1)
    X = np.hstack([rng.normal(0, [1.0, 3.0], (50, 2)), rng.normal(0, 10.0, (50, 5))])
    Z = BlockScaler([2, 5], per_feature=False).fit_transform(X)
    assert Z[:, :2].var(axis=0).sum() == pytest.approx(1.0) and Z[:, 2:].var(axis=0).sum() == pytest.approx(1.0)
    ratio = Z[:, 1].var() / Z[:, 0].var()
    assert ratio == pytest.approx(X[:, 1].var() / X[:, 0].var())


def test_block_scaler_refuses_blocks_that_do_not_cover_the_columns():
    with pytest.raises(ValueError, match=r"do not add up to 10 columns"):
        BlockScaler([4, 5]).fit(np.zeros((3, 10)))


def test_block_scaler_saves_as_an_identical_standard_scaler():
    X, _, _ = two_blocks()
    scaler = BlockScaler([8, 400]).fit(X[:40])
    np.testing.assert_allclose(scaler.as_standard_scaler().transform(X[40:]), scaler.transform(X[40:]), rtol=1e-12)


def test_block_scaling_keeps_a_small_informative_block_from_drowning():
    X, y, groups = two_blocks(n_people=40)
    choice = choose_rule(X, y, groups, [8, 400], ["concat", "block_scaled"], C_grid=[0.01, 1.0], n_folds=4)
    assert choice.cv_accuracy["block_scaled"] > choice.cv_accuracy["concat"] + 0.05
    assert choice.rule == "block_scaled"
    # the saved model holds scikit-learn types only and predicts like the block-scaled pipeline it replaces
    assert isinstance(choice.estimator, Pipeline) and isinstance(choice.estimator.named_steps["svm"], SVC)
    assert type(choice.estimator.named_steps["scale"]).__module__.startswith("sklearn.")
    refit = Pipeline([("scale", BlockScaler([8, 400])), ("svm", SVC(kernel="linear", C=choice.C))]).fit(X, y)
    np.testing.assert_allclose(choice.estimator.decision_function(X), refit.decision_function(X), atol=1e-6)


def test_stacking_uses_each_source_svm_and_reports_its_own_cv_accuracy():
    X, y, groups = two_blocks(n_people=40)
    stacked = fit_stacked(X, y, groups, [8, 400], C_grid=[0.01, 1.0], n_folds=4, seed=0)
    assert len(stacked.sources) == 2
    informative, noise = (max(s.cv_accuracy.values()) for s in stacked.sources)
    assert informative > 0.8 and noise < 0.7
    assert stacked.estimator.decision_function(X).shape == (len(y),)


def test_fusion_on_shuffled_labels_looks_like_noise():
    X, y, groups = two_blocks(n_people=40, seed=3)
    shuffled = np.repeat(np.random.default_rng(5).permutation(y[::2]), 2)  # per person, so groups stay consistent
    choice = choose_rule(X, shuffled, groups, [8, 400], C_grid=[0.01, 1.0], n_folds=4)
    assert set(choice.cv_accuracy) == {"concat", "block_scaled", "stacked"}
    assert all(0.25 <= acc <= 0.75 for acc in choice.cv_accuracy.values()), choice.cv_accuracy


def test_unknown_rules_are_refused():
    X, y, groups = two_blocks(n_people=10)
    with pytest.raises(ValueError, match="fusion rules must be among"):
        choose_rule(X, y, groups, [8, 400], ["average"])



def test_stacking_sources_choose_c_like_select_svm_and_feed_the_saved_model_their_out_of_fold_scores():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from facediag.classifiers.fusion import linear_svm
    from facediag.classifiers.svm import select_svm

    X, _, groups = two_blocks(n_people=30, seed=2)
    y = np.repeat(np.arange(30) % 3, 2)  # three classes: decision values have one column per class
    X[:, :8] += 0.3 * y[:, None]
    stacked = fit_stacked(X, y, groups, [8, 400], C_grid=[0.01, 0.1, 1.0], n_folds=3, seed=0)
    for source, columns in zip(stacked.sources, (slice(0, 8), slice(8, 408)), strict=True):
        reference = select_svm(linear_svm(StandardScaler()), X[:, columns], y, groups, [0.01, 0.1, 1.0], 3, 0,
                               param="svm__C")
        assert source.C == reference.C
        assert source.cv_accuracy == pytest.approx(reference.cv_accuracy)
        assert source.out_of_fold.shape == (len(y), 3)
    meta = LogisticRegression(max_iter=1000).fit(np.hstack([s.out_of_fold for s in stacked.sources]), y)
    np.testing.assert_allclose(stacked.estimator.final_estimator_.coef_, meta.coef_, rtol=1e-5, atol=1e-7)
    assert 0.0 <= stacked.cv_accuracy <= 1.0


def test_source_selection_scores_subsets_and_single_sources_and_refits_only_the_winner():
    X, y, groups = two_blocks(n_people=40)
    noise = np.random.default_rng(7).normal(0, 1.0, (len(y), 20))
    X3 = np.hstack([X, noise])
    choice = choose_rule(X3, y, groups, [8, 400, 20], ["block_scaled", "stacked"], C_grid=[0.01, 1.0], n_folds=4,
                         select_sources=True, names=["small", "large", "noise"])
    assert list(choice.cv_accuracy) == ["block_scaled", "stacked", "stacked[small+large]", "stacked[small+noise]",
                                        "stacked[large+noise]", "single[small]", "single[large]", "single[noise]"]
    # a single source's candidate is scored by its own SVM's CV (the per-source fits, no extra fits)
    assert choice.cv_accuracy["single[small]"] == pytest.approx(choice.source_cv_accuracy[0])
    assert choice.cv_accuracy[choice.rule] == max(choice.cv_accuracy.values())
    assert 0 in choice.chosen_sources  # the informative block takes part in whatever wins
    # the winner is refitted on everything and takes the full concatenated columns
    assert choice.estimator.decision_function(X3).shape == (len(y),)
    assert np.mean(choice.estimator.predict(X3) == y) > 0.8


def test_single_source_candidate_ignores_the_other_columns():
    X, y, groups = two_blocks(n_people=30, seed=4)
    choice = choose_rule(X, y, groups, [8, 400], ["concat"], C_grid=[0.01, 1.0], n_folds=3, select_sources=True)
    single = choice.cv_accuracy["single[source0]"]
    assert set(choice.cv_accuracy) == {"concat", "single[source0]", "single[source1]"} and single > 0.8
    # plain concatenation lets the noisy block drown the informative one: the small block alone wins
    assert choice.rule == "single[source0]" and choice.chosen_sources == [0] and choice.C == choice.source_C[0]
    scrambled = X.copy()
    scrambled[:, 8:] = np.random.default_rng(1).normal(0, 50.0, scrambled[:, 8:].shape)
    np.testing.assert_allclose(choice.estimator.decision_function(scrambled), choice.estimator.decision_function(X))


def test_source_selection_on_shuffled_labels_looks_like_noise():
    X, y, groups = two_blocks(n_people=40, seed=3)
    shuffled = np.repeat(np.random.default_rng(5).permutation(y[::2]), 2)
    choice = choose_rule(X, shuffled, groups, [8, 400], C_grid=[0.01, 1.0], n_folds=4, select_sources=True)
    assert all(0.2 <= acc <= 0.8 for acc in choice.cv_accuracy.values()), choice.cv_accuracy
