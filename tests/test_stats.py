"""Person-level intervals and paired comparisons: known answers on small synthetic data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import roc_auc_score

from facediag.scoring.metrics import class_ranking_scores, classification_metrics, wilson_interval
from facediag.scoring.stats import holm, metric_intervals, paired_comparison, person_weights, resampled_metrics


def _scores_for(y_true: np.ndarray, correct: np.ndarray, n_classes: int = 2) -> np.ndarray:
    predicted = np.where(correct, y_true, (y_true + 1) % n_classes)
    scores = np.full((len(y_true), n_classes), -1.0)
    scores[np.arange(len(y_true)), predicted] = 1.0
    return scores


def test_person_weights_draw_whole_people_with_replacement():
    groups = np.array(["a", "a", "b", "c", "c", "c"])
    weights = person_weights(groups, n_resamples=500, seed=1)

    assert weights.shape == (500, 6)
    assert (weights[:, 0] == weights[:, 1]).all() and (weights[:, 3] == weights[:, 5]).all()
    people_drawn = weights[:, 0] + weights[:, 2] + weights[:, 3]  # one column per person
    assert (people_drawn == 3).all()  # as many draws as people
    assert np.array_equal(weights, person_weights(groups, n_resamples=500, seed=1))  # seeded


def test_two_identical_photos_per_person_give_the_interval_of_half_as_many_images():
    # 40 people, both photos right or both wrong: 40 independent outcomes, not 80
    rng = np.random.default_rng(0)
    person_right = rng.random(40) < 0.75
    correct = np.repeat(person_right, 2)
    y_true = np.tile([0, 1], 40)
    groups = np.repeat(np.arange(40), 2)
    scores = _scores_for(y_true, correct)

    clustered = classification_metrics(y_true, scores, ["h", "d"], groups=groups)
    naive = classification_metrics(y_true, scores, ["h", "d"])

    k = int(person_right.sum())
    width = np.diff(clustered["accuracy_ci"])[0]
    assert clustered["accuracy_ci_method"] == "person bootstrap" and naive["accuracy_ci_method"] == "wilson"
    assert naive["accuracy_ci"] == pytest.approx(list(wilson_interval(2 * k, 80)))
    assert width > 1.25 * np.diff(naive["accuracy_ci"])[0]
    assert width == pytest.approx(np.diff(wilson_interval(k, 40))[0], rel=0.2)


def test_one_image_per_person_keeps_wilson_for_proportions_and_bootstraps_the_rest():
    y_true = np.array([0, 1] * 15)
    correct = np.arange(30) % 5 != 0
    intervals, methods = metric_intervals(y_true, _scores_for(y_true, correct), 1, groups=np.arange(30))

    tp = int((correct & (y_true == 1)).sum())
    assert intervals["accuracy"] == pytest.approx(list(wilson_interval(int(correct.sum()), 30)))
    assert intervals["sensitivity"] == pytest.approx(list(wilson_interval(tp, 15)))
    assert methods["accuracy"] == methods["specificity"] == "wilson"
    assert methods["auc"] == methods["balanced_accuracy"] == "person bootstrap"


def test_all_correct_with_repeated_people_falls_back_to_wilson_over_people():
    y_true = np.tile([0, 1], 10)
    intervals, methods = metric_intervals(y_true, _scores_for(y_true, np.ones(20, bool)), 1,
                                          groups=np.repeat(np.arange(10), 2))
    assert methods["accuracy"] == "wilson (people)"
    assert intervals["accuracy"] == pytest.approx(list(wilson_interval(10, 10)))


@pytest.mark.parametrize("n_classes", [2, 5])
def test_unit_weights_reproduce_the_point_metrics(n_classes):
    rng = np.random.default_rng(n_classes)
    y_true = rng.integers(0, n_classes, 60)
    scores = rng.normal(size=(60, n_classes))
    scores[np.arange(60), y_true] += 0.8
    point = classification_metrics(y_true, scores, [f"k{c}" for c in range(n_classes)])

    resampled = resampled_metrics(np.ones((1, 60)), y_true, scores.argmax(axis=1), class_ranking_scores(scores),
                                  1 if n_classes == 2 else None)

    for key in ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "auc"):
        assert resampled[key][0] == pytest.approx(point[key]), key


def test_weighted_auc_equals_scikit_learn_with_sample_weights():
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 2, 50)
    scores = np.round(rng.normal(size=(50, 2)), 1)  # ties included
    weights = person_weights(np.arange(50), n_resamples=3, seed=4)
    ranking = class_ranking_scores(scores)

    resampled = resampled_metrics(weights, y_true, scores.argmax(axis=1), ranking, 1)

    for b in range(3):
        expected = roc_auc_score(y_true, ranking[:, 1], sample_weight=weights[b])
        assert resampled["auc"][b] == pytest.approx(expected)


def test_paired_comparison_runs_mcnemar_on_discordant_images():
    # 30 images, one per person: A right on 20, B right on 12; A alone right on 10, B alone right on 2
    a = np.array([True] * 10 + [False] * 2 + [True] * 10 + [False] * 8)
    b = np.array([False] * 10 + [True] * 2 + [True] * 10 + [False] * 8)

    result = paired_comparison(a, b, groups=np.arange(30))

    assert (result.unit, result.n_units, result.n_a_better, result.n_b_better) == ("image", 30, 10, 2)
    assert result.p_value == pytest.approx(binomtest(2, 12, 0.5).pvalue)
    assert result.accuracy_difference == pytest.approx(8 / 30)
    assert result.difference_ci[0] <= 8 / 30 <= result.difference_ci[1]


def test_paired_comparison_counts_a_person_for_the_method_right_on_more_of_their_images():
    groups = np.repeat(["p1", "p2", "p3", "p4"], 2)
    a = np.array([True, False, True, True, False, False, True, True])  # p1 1/2, p2 2/2, p3 0/2, p4 2/2
    b = np.array([False, False, True, False, True, True, True, True])  # p1 0/2, p2 1/2, p3 2/2, p4 2/2

    result = paired_comparison(a, b, groups)

    assert (result.unit, result.n_a_better, result.n_b_better) == ("person", 2, 1)
    assert result.p_value == pytest.approx(binomtest(1, 3, 0.5).pvalue)


def test_identical_predictions_are_not_different():
    correct = np.array([True, False, True, True])
    result = paired_comparison(correct, correct, groups=np.arange(4))
    assert result.p_value == 1.0 and result.difference_ci == [0.0, 0.0]


def test_holm_adjusts_like_the_step_down_procedure():
    p = [0.01, 0.04, 0.03]
    # sorted 0.01, 0.03, 0.04 -> x3, x2, x1, made monotone: 0.03, 0.06, 0.06
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([]) == []


def test_a_single_person_gets_a_wide_interval_not_a_point():
    y_true = np.array([0, 1])
    intervals, methods = metric_intervals(y_true, _scores_for(y_true, np.array([True, False])), 1,
                                          groups=["only", "only"])
    low, high = intervals["accuracy"]
    assert methods["accuracy"] == "wilson (people)" and low < 0.2 and high > 0.8
