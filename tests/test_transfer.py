"""What moved at a new site: the threshold-shift flag and re-thresholding on a few of its people."""

import numpy as np
import pandas as pd
import pytest

from facediag.evaluation.transfer import calibration_people, internal_vs_external, rethreshold, threshold_shift

CLASSES = ["healthy", "sick"]


def metrics(accuracy, sensitivity, specificity, auc):
    return {"accuracy": accuracy, "sensitivity": sensitivity, "specificity": specificity, "auc": auc,
            "accuracy_ci": [accuracy - 0.1, min(1.0, accuracy + 0.1)]}


def test_a_held_ranking_with_a_fallen_specificity_is_flagged_as_a_threshold_shift():
    table = internal_vs_external(metrics(0.95, 0.95, 0.95, 0.99), metrics(0.77, 1.0, 0.54, 0.99))
    assert "threshold shift" in threshold_shift(table) and "specificity 0.950 -> 0.540" in threshold_shift(table)
    assert table.set_index("metric").loc["specificity", "change"] == pytest.approx(-0.41)


def test_no_flag_when_the_ranking_fell_too_or_nothing_fell():
    assert threshold_shift(internal_vs_external(metrics(0.95, 0.95, 0.95, 0.99), metrics(0.60, 0.6, 0.6, 0.62))) \
        is None
    assert threshold_shift(internal_vs_external(metrics(0.95, 0.95, 0.95, 0.99), metrics(0.93, 0.9, 0.96, 0.98))) \
        is None


def shifted_site(n_people: int = 20, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Two photos per person; the model ranks the classes well but calls almost everyone healthy."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.array(CLASSES), n_people)
    people = np.array([f"p{i}" for i in range(2 * n_people)])
    rows, probabilities = [], []
    for person, label in zip(people, labels, strict=True):
        for photo in range(2):
            p_sick = 0.30 + rng.uniform(-0.05, 0.05) if label == "sick" else 0.08 + rng.uniform(-0.05, 0.05)
            probabilities.append([1 - p_sick, p_sick])
            rows.append({"path": f"{person}_{photo}.jpg", "subject": person, "label": label, "role": "test",
                         "variant": "dtl2"})
    probabilities = np.array(probabilities)
    frame = pd.DataFrame(rows)
    frame["pred"] = [CLASSES[i] for i in probabilities.argmax(axis=1)]
    return frame, probabilities


def test_a_site_with_photos_of_one_class_shows_the_rate_it_cannot_measure_as_missing_not_zero():
    from facediag.scoring.metrics import classification_metrics as compute_metrics

    internal = compute_metrics(np.array([0, 0, 1, 1]), np.eye(2)[[0, 0, 1, 1]], CLASSES, "sick")
    only_healthy = compute_metrics(np.array([0, 0, 0]), np.eye(2)[[0, 0, 1]], CLASSES, "sick")
    assert only_healthy["sensitivity"] == 0.0  # scikit-learn's zero_division convention, kept in the metrics
    table = internal_vs_external(internal, only_healthy).set_index("metric")
    assert pd.isna(table.loc["sensitivity", "external"]) and pd.isna(table.loc["sensitivity", "change"])
    assert table.loc["specificity", "external"] == pytest.approx(2 / 3)
    only_sick = compute_metrics(np.array([1, 1]), np.eye(2)[[1, 1]], CLASSES, "sick")
    table = internal_vs_external(internal, only_sick).set_index("metric")
    assert pd.isna(table.loc["specificity", "external"]) and table.loc["sensitivity", "external"] == 1.0


def test_rethresholding_on_a_few_people_restores_the_others_accuracy_and_keeps_people_apart():
    predictions, probabilities = shifted_site()
    moved = rethreshold(predictions, probabilities, CLASSES, "sick", people_per_class=3, seed=1)
    assert len(moved.calibration_people) == 6
    assert moved.before["accuracy"] == pytest.approx(0.5)
    assert moved.after["accuracy"] == pytest.approx(1.0)
    assert moved.after["n"] == 2 * 34  # the calibration people's photos are not scored
    assert moved.offsets[1] > 0  # the sick class is favoured by the fitted offset


def test_calibration_refuses_to_use_every_person_of_a_class():
    predictions, _ = shifted_site(n_people=3)
    with pytest.raises(ValueError, match="class healthy has 3 people"):
        calibration_people(predictions, 3, seed=0)
