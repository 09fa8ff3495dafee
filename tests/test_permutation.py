"""Permutation tests by person: what is shuffled, the +1 p-value, and a whole (small) pipeline under the null."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, cross_val_predict

from facediag.scoring.permutation import (
    BY_PERSON,
    WITHIN_PERSON,
    permutation_p_value,
    permutation_scheme,
    permutation_test,
    permute_by_person,
    permute_labels,
    permute_within_person,
)


def sex_like(n_people: int = 30, photos: int = 2):
    """Each person one label for all their photos."""
    subjects = np.repeat([f"p{i:02d}" for i in range(n_people)], photos)
    labels = np.repeat(np.where(np.arange(n_people) < n_people // 3, "female", "male"), photos)
    return labels, subjects


def expression_like(n_people: int = 30):
    """Each person a neutral and a smiling photo."""
    return np.tile(["neutral", "smiling"], n_people), np.repeat([f"p{i:02d}" for i in range(n_people)], 2)


def test_by_person_keeps_one_label_per_person_and_the_people_per_class():
    labels, subjects = sex_like()
    permuted = permute_by_person(labels, subjects, np.random.default_rng(0))

    for person in set(subjects):
        assert len(set(permuted[subjects == person])) == 1
    assert (permuted == "female").sum() == (labels == "female").sum()
    assert (permuted != labels).any()


def test_within_person_shuffles_only_inside_each_person():
    labels, subjects = expression_like()
    permuted = permute_within_person(labels, subjects, np.random.default_rng(0))

    for person in set(subjects):
        assert sorted(permuted[subjects == person]) == ["neutral", "smiling"]
    assert (permuted != labels).any()


def test_auto_picks_by_person_for_a_label_of_the_person_and_within_for_a_state():
    assert permutation_scheme(*sex_like()) == BY_PERSON
    assert permutation_scheme(*expression_like()) == WITHIN_PERSON


def test_by_person_refuses_people_with_several_labels():
    with pytest.raises(ValueError, match="30 people have photos under several labels"):
        permute_by_person(*expression_like(), np.random.default_rng(0))


def test_permutations_are_seeded():
    labels, subjects = sex_like()
    first = list(permute_labels(labels, subjects, 5, seed=3))
    assert all((a == b).all() for a, b in zip(first, permute_labels(labels, subjects, 5, seed=3), strict=True))
    assert any((a != b).any() for a, b in zip(first, permute_labels(labels, subjects, 5, seed=4), strict=True))


def test_p_value_counts_the_observed_labelling_and_is_never_zero():
    assert permutation_p_value(0.9, [0.5, 0.6, 0.7]) == pytest.approx(1 / 4)
    assert permutation_p_value(0.6, [0.5, 0.6, 0.7]) == pytest.approx(3 / 4)  # ties count against
    assert permutation_p_value(0.1, [0.5, 0.6], greater=False) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="non-empty"):
        permutation_p_value(0.5, [])


def _grouped_cv_accuracy(features: np.ndarray, subjects: np.ndarray):
    """A whole small pipeline: person-grouped 5-fold CV of a logistic regression, accuracy of the pooled rows."""
    def score(labels: np.ndarray) -> float:
        predicted = cross_val_predict(LogisticRegression(), features, labels, groups=subjects, cv=GroupKFold(5))
        return float((predicted == labels).mean())
    return score


def test_a_pipeline_that_reads_the_label_beats_every_permutation_and_one_that_cannot_does_not():
    rng = np.random.default_rng(1)
    labels, subjects = expression_like(40)
    person_effect = np.repeat(rng.normal(size=(40, 4)), 2, axis=0)  # who the person is, shared by both photos
    readable = person_effect + np.c_[(labels == "smiling") * 2.0, np.zeros((80, 3))]

    real = permutation_test(_grouped_cv_accuracy(readable, subjects), labels, subjects, 19, seed=0)
    assert real.scheme == WITHIN_PERSON and real.observed > 0.75
    assert real.p_value == pytest.approx(1 / 20) and "p = 0.05" in real.summary()

    blind = permutation_test(_grouped_cv_accuracy(person_effect, subjects), labels, subjects, 19, seed=0)
    assert blind.p_value > 0.2 and blind.to_dict()["n_permutations"] == 19


@pytest.fixture(scope="module")
def permuted_run(tmp_path_factory, shared_cache, london_dir):
    """A tiny DTL2 run of London expression with ``permutations=3`` (no controls), and what train.py printed."""
    from tests.conftest import DATA_DIR, TINY, run_python

    run_dir = tmp_path_factory.mktemp("permuted_run")
    result = run_python("train.py", *TINY, "num_threads=1", f"hydra.run.dir={run_dir}",
                        f"paths.cache_dir={shared_cache}", f"paths.data_dir={DATA_DIR}", "strategy=dtl2",
                        "strategy.C_grid=[1.0]", "data.task=expression", "controls=[]", "permutations=3")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return run_dir, result.stdout


def test_permutations_retrain_the_pipeline_on_labels_shuffled_within_each_person(permuted_run):
    import json

    import pandas as pd

    run_dir, printed = permuted_run
    method = pd.read_csv(run_dir / "predictions.csv", dtype={"subject": str})
    permuted = [pd.read_csv(run_dir / "permutations" / str(i) / "predictions.csv", dtype={"subject": str})
                for i in range(3)]
    for frame in permuted:  # every person keeps one neutral and one smiling photo; some photos swapped labels
        merged = method.merge(frame, on="path", suffixes=("", "_permuted"))
        assert len(merged) == len(method)
        assert (merged.groupby("subject")["label_permuted"].apply(sorted) == merged.groupby("subject")["label"]
                .apply(sorted)).all()
    assert any((method.merge(f, on="path")["label_x"] != method.merge(f, on="path")["label_y"]).any() for f in permuted)
    stored = json.loads((run_dir / "metrics.json").read_text())["permutation"]["dtl2"]
    test = method[method["role"] == "test"]
    observed = float((test["pred"] == test["label"]).mean())
    null = [float((f[f["role"] == "test"]["pred"] == f[f["role"] == "test"]["label"]).mean()) for f in permuted]
    assert stored["observed"] == pytest.approx(observed) and stored["null"] == pytest.approx(null)
    assert stored["p_value"] == pytest.approx((1 + sum(v >= observed for v in null)) / 4)
    assert stored["scheme"] == WITHIN_PERSON and stored["n_permutations"] == 3
    assert f"permutation test (3 permutations within person, seed 42): observed {observed:.3f}" in printed


def test_the_run_report_recomputes_the_permutation_test(permuted_run, tmp_path):
    import json

    from facediag.evaluation.single import evaluate_run

    run_dir, _ = permuted_run
    summary = evaluate_run(run_dir, out_dir=tmp_path)
    stored = json.loads((run_dir / "metrics.json").read_text())["permutation"]
    assert summary["permutation"] == stored
    report = (tmp_path / "report.md").read_text()
    assert "Permutation test: the whole pipeline retrained on permuted labels" in report
    assert f"{stored['dtl2']['p_value']:.3g}" in report


def test_the_sweep_report_shows_each_runs_permutation_test_beside_its_accuracy(permuted_run, tmp_path):
    import json

    import pandas as pd

    from facediag.evaluation.sweep import evaluate_sweep

    run_dir, _ = permuted_run
    evaluate_sweep([run_dir], out_dir=tmp_path)
    stored = json.loads((run_dir / "metrics.json").read_text())["permutation"]["dtl2"]
    row = pd.read_csv(tmp_path / "report.csv").set_index("variant").loc["dtl2"]
    assert row["permutation_p"] == pytest.approx(stored["p_value"]) and row["permutations"] == 3
    assert row["permutation_null_mean"] == pytest.approx(np.mean(stored["null"]))
    assert f"p = {stored['p_value']:.3g} (3 permutations)" in (tmp_path / "report.md").read_text()
