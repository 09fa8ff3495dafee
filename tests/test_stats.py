"""Person-level intervals and paired comparisons: known answers on small synthetic data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import roc_auc_score

from facediag.scoring.metrics import class_ranking_scores, classification_metrics, wilson_interval
from facediag.scoring.stats import (
    PERSON_LEVEL_METHODS,
    effective_people,
    holm,
    metric_intervals,
    paired_comparison,
    person_weights,
    resampled_metrics,
)


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
    assert clustered["accuracy_ci_method"] in PERSON_LEVEL_METHODS and naive["accuracy_ci_method"] == "wilson"
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


def test_holm_gives_statsmodels_values_with_ties_and_caps():
    # statsmodels 0.15.0 multipletests(p, method="holm")[1] for these p-values (importing it and its per-call
    # gc.collect cost ~4 s here, so its answers are written out)
    cases = [
        ([0.5], [0.5]),
        ([0.02, 0.02, 0.9, 0.3], [0.08, 0.08, 0.9, 0.6]),
        ([0.127392, 0.053957, 0.008195, 0.003306, 0.162654, 0.182551, 0.121327],
         [0.485308, 0.269785, 0.049170, 0.023142, 0.485308, 0.485308, 0.485308]),
        ([0.73, 0.54, 0.94, 0.82, 0.0, 0.86, 0.03, 0.73, 0.18, 0.86, 0.54, 0.3],
         [1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.33, 1.0, 1.0, 1.0, 1.0, 1.0]),
    ]
    for p, expected in cases:
        assert holm(p) == pytest.approx(expected, abs=1e-6), p


def test_a_single_person_gets_a_wide_interval_not_a_point():
    y_true = np.array([0, 1])
    intervals, methods = metric_intervals(y_true, _scores_for(y_true, np.array([True, False])), 1,
                                          groups=["only", "only"])
    low, high = intervals["accuracy"]
    assert methods["accuracy"] == "wilson (people)" and low < 0.2 and high > 0.8


def _two_photos_each(n_people: int, wrong: list[int], same_class: bool = False):
    """n_people x 2 photos (one per class, or both of the person's class) with the photos ``wrong`` misread."""
    y_true = np.repeat(np.arange(n_people) % 2, 2) if same_class else np.tile([0, 1], n_people)
    correct = np.ones(2 * n_people, dtype=bool)
    correct[wrong] = False
    return y_true, _scores_for(y_true, correct), np.repeat(np.arange(n_people), 2)


def test_accuracy_lower_bound_falls_strictly_with_0_1_3_errors_near_one():
    # issue 21: the bootstrap alone gave 0.964 (0 errors, Wilson), 0.985 (1 error), 0.966 (3 errors)
    lows = []
    for wrong in ([], [0], [0, 2, 4]):
        y_true, scores, groups = _two_photos_each(102, wrong)
        result = classification_metrics(y_true, scores, ["neutral", "smiling"], groups=groups)
        low, high = result["accuracy_ci"]
        assert low < result["accuracy"] <= high == 1.0
        lows.append(low)
    assert lows[0] == pytest.approx(wilson_interval(102, 102)[0])
    assert lows[0] > lows[1] > lows[2]


@pytest.mark.parametrize("same_person", [True, False], ids=["errors in one person", "errors in several"])
@pytest.mark.parametrize("same_class", [True, False], ids=["label of the person", "label of the photo"])
def test_every_added_error_lowers_the_lower_bound_and_never_raises_the_upper(same_person, same_class):
    bounds = []
    for n_errors in range(9):
        wrong = list(range(n_errors)) if same_person else list(range(0, 2 * n_errors, 2))
        y_true, scores, groups = _two_photos_each(60, wrong, same_class)
        intervals, _ = metric_intervals(y_true, scores, 1, groups=groups)
        bounds.append(intervals["accuracy"])
    lows, highs = np.array(bounds).T
    assert (np.diff(lows) < 0).all() and (np.diff(highs) <= 0).all()


def test_the_floor_never_narrows_the_person_bootstrap():
    rng = np.random.default_rng(5)
    groups = np.repeat(np.arange(50), 2)
    y_true = np.tile([0, 1], 50)
    correct = rng.random(100) < 0.8
    scores = _scores_for(y_true, correct)
    intervals, methods = metric_intervals(y_true, scores, 1, groups=groups, n_resamples=500, seed=2)

    weights = person_weights(groups, 500, 2)
    alone = resampled_metrics(weights, y_true, scores.argmax(axis=1), class_ranking_scores(scores), 1)["accuracy"]
    low, high = np.percentile(alone, [2.5, 97.5])
    floor = wilson_interval(int(correct.sum()) // 2, 50)  # even share right: k / 50 people = correct / 100
    assert intervals["accuracy"][0] <= min(low, floor[0]) + 1e-12 and intervals["accuracy"][1] >= high - 1e-12
    assert methods["accuracy"] in PERSON_LEVEL_METHODS


def test_sensitivity_and_specificity_count_the_people_of_their_class():
    # sex-like: both photos of a person share the label; 20 positive people, 80 negative, all right
    y_true = np.repeat(np.r_[np.ones(20, int), np.zeros(80, int)], 2)
    groups = np.repeat(np.arange(100), 2)
    intervals, methods = metric_intervals(y_true, _scores_for(y_true, np.ones(200, bool)), 1, groups=groups)

    assert intervals["sensitivity"] == pytest.approx(list(wilson_interval(20, 20)))
    assert intervals["specificity"] == pytest.approx(list(wilson_interval(80, 80)))
    assert intervals["accuracy"] == pytest.approx(list(wilson_interval(100, 100)))
    assert methods["sensitivity"] == methods["specificity"] == "wilson (people)"


def test_auc_and_balanced_accuracy_never_get_a_binomial_interval():
    for groups in (np.repeat(np.arange(30), 2), np.arange(60)):
        y_true = np.tile([0, 1], 30)
        intervals, methods = metric_intervals(y_true, _scores_for(y_true, np.ones(60, bool)), 1, groups=groups)
        for key in ("auc", "balanced_accuracy"):
            assert methods[key] == "person bootstrap (every resample alike)" and intervals[key] == [1.0, 1.0]
    wrong = np.arange(60) % 7 == 0
    _, methods = metric_intervals(y_true, _scores_for(y_true, ~wrong), 1, groups=np.repeat(np.arange(30), 2))
    assert methods["auc"] == methods["balanced_accuracy"] == "person bootstrap"


def test_effective_people_counts_people_of_equal_size_and_discounts_one_large_person():
    assert effective_people(np.repeat(np.arange(10), 2)) == pytest.approx(10)
    one_large = np.r_[np.zeros(30, int), np.arange(1, 11)]  # 30 photos of one person, 10 of ten others
    assert effective_people(one_large) == pytest.approx(40**2 / (30**2 + 10))


def test_one_person_holding_most_images_widens_the_accuracy_interval():
    groups = np.r_[np.zeros(30, int), np.arange(1, 11)]
    y_true = np.arange(40) % 2
    intervals, methods = metric_intervals(y_true, _scores_for(y_true, np.ones(40, bool)), 1, groups=groups)
    assert methods["accuracy"] == "wilson (people)"
    assert intervals["accuracy"][0] < wilson_interval(11, 11)[0] < 0.8
