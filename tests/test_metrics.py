"""Metrics equal hand-computed values; Wilson intervals equal published values."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from facediag.scoring.metrics import class_ranking_scores, classification_metrics, wilson_interval


@pytest.mark.parametrize(
    ("successes", "n", "expected"),
    [
        # The paper's best binary result, 57/60 = 95.0%.
        (57, 60, (0.8630, 0.9829)),
        # Newcombe (1998), Stat. Med. 17:857-872, Table I, method 3 (Wilson score, no continuity correction).
        (81, 263, (0.2553, 0.3662)),
        (15, 148, (0.0624, 0.1605)),
        (0, 20, (0.0, 0.1611)),
        (1, 29, (0.0061, 0.1718)),
        # Closed forms at the edges: upper bound z^2 / (n + z^2) for 0/n, mirrored for n/n.
        (0, 10, (0.0, 1.959964**2 / (10 + 1.959964**2))),
        (10, 10, (10 / (10 + 1.959964**2), 1.0)),
    ],
)
def test_wilson_interval_matches_published_values(successes, n, expected):
    low, high = wilson_interval(successes, n)
    assert low == pytest.approx(expected[0], abs=5e-5)
    assert high == pytest.approx(expected[1], abs=5e-5)


def test_wilson_interval_widens_with_confidence_and_contains_the_proportion():
    low95, high95 = wilson_interval(57, 60)
    low99, high99 = wilson_interval(57, 60, confidence=0.99)
    assert low99 < low95 < 57 / 60 < high95 < high99


@pytest.mark.parametrize(("successes", "n"), [(0, 0), (3, 2), (-1, 5), (1.5, 3)])
def test_wilson_interval_rejects_impossible_counts(successes, n):
    with pytest.raises(ValueError, match="wilson_interval"):
        wilson_interval(successes, n)


def _binary_case() -> tuple[np.ndarray, np.ndarray]:
    """10 healthy (label 0) and 10 disease (label 1) samples with known disease probabilities.

    Confusion matrix (rows = true): healthy [8 TN, 2 FP], disease [1 FN, 9 TP]. Of the 100
    (disease, healthy) pairs the disease sample scores higher in 89: AUC = 0.89.
    """
    healthy = [0.05, 0.10, 0.15, 0.20, 0.25, 0.35, 0.40, 0.45, 0.62, 0.72]
    disease = [0.32, 0.55, 0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.90, 0.95]
    p_disease = np.array(healthy + disease)
    y_true = np.array([0] * 10 + [1] * 10)
    return y_true, p_disease


def test_binary_metrics_equal_hand_computed_values_for_the_positive_class():
    y_true, p_disease = _binary_case()
    scores = np.column_stack([1 - p_disease, p_disease])
    result = classification_metrics(y_true, scores, ["healthy", "disease"], positive="disease")

    assert result["confusion_matrix"] == [[8, 2], [1, 9]]
    assert result["n"] == 20 and result["n_correct"] == 17
    assert result["accuracy"] == pytest.approx(17 / 20)
    assert result["accuracy_ci"] == pytest.approx(list(wilson_interval(17, 20)))
    assert result["precision"] == pytest.approx(9 / 11)
    assert result["sensitivity"] == pytest.approx(9 / 10)
    assert result["specificity"] == pytest.approx(8 / 10)
    assert result["f1"] == pytest.approx(2 * 9 / (2 * 9 + 2 + 1))
    assert result["balanced_accuracy"] == pytest.approx((9 / 10 + 8 / 10) / 2)
    assert result["auc"] == pytest.approx(0.89)
    assert result["top1_error"] == pytest.approx(3 / 20)
    assert result["top3_error"] is None
    assert result["positive"] == "disease"
    assert result["per_class"]["healthy"] == pytest.approx(
        {
            "precision": 8 / 9,
            "sensitivity": 0.8,
            "specificity": 0.9,
            "f1": 16 / 19,
            "accuracy": 0.8,
            "auc": 0.89,
            "n": 10,
        }
    )
    json.dumps(result, allow_nan=False)


def test_binary_metrics_follow_the_configured_positive_class():
    y_true, p_disease = _binary_case()
    scores = np.column_stack([1 - p_disease, p_disease])
    result = classification_metrics(y_true, scores, ["healthy", "disease"], positive="healthy")
    assert result["precision"] == pytest.approx(8 / 9)
    assert result["sensitivity"] == pytest.approx(8 / 10)
    assert result["specificity"] == pytest.approx(9 / 10)
    assert result["auc"] == pytest.approx(0.89)


def test_binary_decision_values_give_the_same_metrics_as_probabilities():
    y_true, p_disease = _binary_case()
    probabilities = np.column_stack([1 - p_disease, p_disease])
    decision = 7.0 * (p_disease - 0.5)  # an SVM-like margin, sign = prediction
    classes = ["healthy", "disease"]
    from_probabilities = classification_metrics(y_true, probabilities, classes, "disease")
    from_decision = classification_metrics(y_true, np.column_stack([-decision, decision]), classes, "disease")
    assert from_decision == from_probabilities


def _three_class_case() -> tuple[np.ndarray, np.ndarray]:
    """Labels and predictions realising the confusion matrix [[5, 1, 0], [2, 3, 1], [0, 1, 4]]."""
    matrix = [[5, 1, 0], [2, 3, 1], [0, 1, 4]]
    y_true, y_pred = [], []
    for true_class, row in enumerate(matrix):
        for predicted_class, count in enumerate(row):
            y_true += [true_class] * count
            y_pred += [predicted_class] * count
    return np.array(y_true), np.array(y_pred)


def test_three_class_metrics_equal_hand_computed_macro_and_per_class_values():
    y_true, y_pred = _three_class_case()
    one_hot = np.eye(3)[y_pred]  # probabilities; with 0/1 scores each class's AUC is (sens + spec) / 2
    result = classification_metrics(y_true, one_hot, ["a", "b", "c"])

    assert result["confusion_matrix"] == [[5, 1, 0], [2, 3, 1], [0, 1, 4]]
    # Per class: a: TP 5 FP 2 FN 1 TN 9; b: TP 3 FP 2 FN 3 TN 9; c: TP 4 FP 1 FN 1 TN 11.
    precision = {"a": 5 / 7, "b": 3 / 5, "c": 4 / 5}
    sensitivity = {"a": 5 / 6, "b": 3 / 6, "c": 4 / 5}
    specificity = {"a": 9 / 11, "b": 9 / 11, "c": 11 / 12}
    f1 = {"a": 10 / 13, "b": 6 / 11, "c": 8 / 10}
    for name in "abc":
        block = result["per_class"][name]
        assert block["precision"] == pytest.approx(precision[name])
        assert block["sensitivity"] == pytest.approx(sensitivity[name])
        assert block["accuracy"] == pytest.approx(sensitivity[name])
        assert block["specificity"] == pytest.approx(specificity[name])
        assert block["f1"] == pytest.approx(f1[name])
        assert block["auc"] == pytest.approx((sensitivity[name] + specificity[name]) / 2)
    assert [result["per_class"][name]["n"] for name in "abc"] == [6, 6, 5]
    assert result["accuracy"] == pytest.approx(12 / 17)
    assert result["precision"] == pytest.approx(np.mean(list(precision.values())))
    assert result["sensitivity"] == pytest.approx(np.mean(list(sensitivity.values())))
    assert result["specificity"] == pytest.approx(np.mean(list(specificity.values())))
    assert result["f1"] == pytest.approx(np.mean(list(f1.values())))
    assert result["balanced_accuracy"] == pytest.approx(np.mean(list(sensitivity.values())))
    assert result["auc"] == pytest.approx(
        np.mean([(sensitivity[name] + specificity[name]) / 2 for name in "abc"])
    )
    assert result["top3_error"] is None
    assert result["positive"] is None
    json.dumps(result, allow_nan=False)


def test_multiclass_auc_from_logits_equals_sklearn_ovr_auc_of_their_softmax():
    rng = np.random.default_rng(0)
    y_true = np.repeat(np.arange(4), 10)
    logits = rng.normal(size=(40, 4)) + 1.5 * np.eye(4)[y_true]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = roc_auc_score(y_true, probabilities, multi_class="ovr", average="macro")
    from_logits = classification_metrics(y_true, logits, list("abcd"))
    from_probabilities = classification_metrics(y_true, probabilities, list("abcd"))
    assert from_logits["auc"] == pytest.approx(expected)
    assert from_probabilities["auc"] == pytest.approx(expected)


def test_huge_decision_values_do_not_saturate_the_auc():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    logits = np.zeros((6, 3))
    logits[:, 0] = [900.0, 800.0, 700.0, 100.0, 0.0, -10.0]  # softmax would round several rows to exactly 1.0
    result = classification_metrics(y_true, logits, ["a", "b", "c"])
    assert result["per_class"]["a"]["auc"] == pytest.approx(1.0)


def test_top3_error_counts_true_classes_outside_the_three_best_scores():
    classes = list("abcde")
    scores = np.array(
        [
            [0.50, 0.20, 0.15, 0.10, 0.05],  # true a: rank 1
            [0.50, 0.20, 0.15, 0.10, 0.05],  # true c: rank 3
            [0.50, 0.20, 0.15, 0.10, 0.05],  # true d: rank 4 -> top-3 miss
            [0.05, 0.10, 0.15, 0.20, 0.50],  # true a: rank 5 -> top-3 miss
        ]
    )
    result = classification_metrics(np.array([0, 2, 3, 0]), scores, classes)
    assert result["top1_error"] == pytest.approx(3 / 4)
    assert result["top3_error"] == pytest.approx(2 / 4)


def test_undefined_values_follow_scikit_learn_zero_division_without_warnings():
    y_true = np.array([0, 0, 1, 1])  # class "c" never occurs and is never predicted
    scores = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.3, 0.6, 0.1]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = classification_metrics(y_true, scores, ["a", "b", "c"])
        binary = classification_metrics(np.array([1, 1, 1]), np.array([[0.2, 0.8]] * 3), ["h", "d"], "d")
    block = result["per_class"]["c"]
    assert block["sensitivity"] == 0.0 and block["precision"] == 0.0 and block["f1"] == 0.0  # zero_division=0
    assert block["accuracy"] is None and block["auc"] is None and block["n"] == 0
    assert block["specificity"] == 1.0
    # "c" is neither a true nor a predicted class: outside scikit-learn's macro label set
    assert result["sensitivity"] == pytest.approx((1.0 + 0.5) / 2)
    assert result["precision"] == pytest.approx((1.0 + 2 / 3) / 2)
    assert result["auc"] == pytest.approx(np.mean([result["per_class"][k]["auc"] for k in "ab"]))
    assert result["zero_division"] == 0
    assert binary["auc"] is None and binary["auc_ci"] is None and binary["specificity"] == 0.0
    assert binary["accuracy"] == 1.0
    json.dumps(result, allow_nan=False)
    json.dumps(binary, allow_nan=False)


def _sklearn_case(n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits where the last class never occurs in y_true and class 1 is never predicted."""
    rng = np.random.default_rng(seed)
    n_true = n_classes - 1 if n_classes > 2 else n_classes
    y_true = rng.integers(0, n_true, 80)
    scores = rng.normal(0.0, 1.0, (80, n_classes))
    scores[np.arange(80), y_true] += 1.0
    if n_classes > 2:
        scores[:, 1] -= 100.0
    return y_true, scores


@pytest.mark.parametrize("n_classes", [2, 5])
def test_every_metric_equals_scikit_learn_with_a_class_never_predicted_and_one_absent(n_classes):
    from sklearn import metrics as sk
    from sklearn.utils.multiclass import unique_labels

    y_true, scores = _sklearn_case(n_classes, seed=n_classes)
    if n_classes == 2:  # the positive class is never predicted
        scores[:, 1] -= 100.0
    classes = [f"k{c}" for c in range(n_classes)]
    y_pred = scores.argmax(axis=1)
    result = classification_metrics(y_true, scores, classes)

    assert result["accuracy"] == sk.accuracy_score(y_true, y_pred)
    assert result["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(y_true, y_pred))
    assert result["confusion_matrix"] == sk.confusion_matrix(y_true, y_pred, labels=range(n_classes)).tolist()
    ranking = class_ranking_scores(scores)
    if n_classes == 2:
        binary = dict(pos_label=1, average="binary", zero_division=0)
        assert result["precision"] == sk.precision_score(y_true, y_pred, **binary) == 0.0
        assert result["sensitivity"] == sk.recall_score(y_true, y_pred, **binary)
        assert result["f1"] == sk.f1_score(y_true, y_pred, **binary)
        assert result["specificity"] == sk.recall_score(y_true, y_pred, pos_label=0, zero_division=0)
        assert result["auc"] == pytest.approx(sk.roc_auc_score(y_true, ranking[:, 1]))
        assert result["top3_error"] is None
    else:
        macro = dict(average="macro", zero_division=0)
        assert result["precision"] == pytest.approx(sk.precision_score(y_true, y_pred, **macro))
        assert result["sensitivity"] == pytest.approx(sk.recall_score(y_true, y_pred, **macro))
        assert result["f1"] == pytest.approx(sk.f1_score(y_true, y_pred, **macro))
        labels = unique_labels(y_true, y_pred)
        specificity = [sk.recall_score(y_true != c, y_pred != c, zero_division=0) for c in labels]
        assert result["specificity"] == pytest.approx(np.mean(specificity))
        present = np.unique(y_true)
        auc = [sk.roc_auc_score(y_true == c, ranking[:, c]) for c in present]
        assert result["auc"] == pytest.approx(np.mean(auc))
        assert result["top3_error"] == pytest.approx(
            1 - sk.top_k_accuracy_score(y_true, scores, k=3, labels=range(n_classes)))
        per_class = sk.precision_recall_fscore_support(y_true, y_pred, labels=range(n_classes), zero_division=0)
        for c, name in enumerate(classes):
            block = result["per_class"][name]
            assert (block["precision"], block["sensitivity"], block["f1"], block["n"]) == pytest.approx(
                tuple(float(v[c]) for v in per_class))
        assert result["per_class"]["k1"]["precision"] == 0.0  # never predicted: counted as 0, not left out


def test_tied_scores_rank_and_count_top_3_as_scikit_learn_does():
    from sklearn import metrics as sk

    rng = np.random.default_rng(7)
    y_true = rng.integers(0, 5, 60)
    scores = np.round(rng.normal(0.0, 1.0, (60, 5)), 0)  # many tied values within and across rows
    ranking = class_ranking_scores(scores)
    result = classification_metrics(y_true, scores, list("abcde"))
    for c, name in enumerate("abcde"):
        assert result["per_class"][name]["auc"] == pytest.approx(sk.roc_auc_score(y_true == c, ranking[:, c]),
                                                                 abs=1e-12)  # fmt: skip
    assert result["top3_error"] == 1 - sk.top_k_accuracy_score(y_true, scores, k=3, labels=range(5))


@pytest.mark.parametrize(
    ("y_true", "scores", "classes", "positive", "message"),
    [
        ([0, 1], np.array([0.3, 0.8]), ["h", "d"], "d", r"np.column_stack\(\[-d, d\]\)"),
        ([0, 2], np.eye(2), ["h", "d"], "d", "outside"),
        ([0, 1], np.eye(2), ["h", "d"], "cancer", "not one of"),
        ([0, 1], np.array([[np.nan, 1.0], [0.0, 1.0]]), ["h", "d"], None, "NaN"),
        ([], np.zeros((0, 2)), ["h", "d"], None, "non-empty"),
        ([0, 0], np.ones((2, 1)), ["h"], None, "at least 2 classes"),
    ],
)
def test_bad_inputs_raise_a_clear_error(y_true, scores, classes, positive, message):
    with pytest.raises(ValueError, match=message):
        classification_metrics(np.array(y_true), scores, classes, positive)
