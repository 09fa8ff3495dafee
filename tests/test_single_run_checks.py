"""Evaluating one run (facediag.evaluation.single) on a small hand-written run dir (no report: its figures cost a
second): every test image of split.csv gets a row somewhere (a photo without a prediction is listed with the
preprocessing's reason), metrics.json that
disagrees with the predictions is named per variant and key, and a run without test rows is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from facediag.evaluation.runs import RunDirError, load_run
from facediag.evaluation.single import missing_predictions, recompute_metrics, stored_differences

PEOPLE = ["a", "b", "c", "d", "e", "f"]
LABELS = ["female", "male", "female", "male", "female", "male"]


def write_run(folder: Path, roles: str = "test") -> Path:
    """Six test photos in split.csv, five predicted (``f`` had no face: preprocess_report.csv says so)."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text("task_name: train\ndata:\n  name: london\n  task: sex\n"
                                                 "strategy:\n  name: my_svm\n  uses_backbone: false\n")
    paths = [f"/photos/{p}.jpg" for p in PEOPLE]
    pd.DataFrame({"path": paths, "label": LABELS, "role": "test", "subject": PEOPLE}).to_csv(folder / "split.csv",
                                                                                             index=False)
    right = [0.9, 0.2, 0.7, 0.4, 0.3]  # score_female; the fifth (e, female) is wrong
    pd.DataFrame({"path": paths[:5], "label": LABELS[:5], "role": roles, "variant": "svm", "score_female": right,
                  "score_male": [1 - s for s in right]}).to_csv(folder / "predictions.csv", index=False)  # fmt: skip
    pd.DataFrame({"path": [paths[5]], "status": ["no_face"], "reason": ["no face found"]}).to_csv(
        folder / "preprocess_report.csv", index=False)  # fmt: skip
    return folder


def test_a_test_photo_without_a_prediction_is_listed_with_the_preprocessing_reason(tmp_path):
    run = load_run(write_run(tmp_path / "run"))
    missing = missing_predictions(run, "svm")
    assert missing.to_dict("records") == [{"path": "/photos/f.jpg", "label": "male",
                                           "reason": "no_face: no face found"}]
    assert missing_predictions(run, "linear")["path"].tolist() == [f"/photos/{p}.jpg" for p in PEOPLE]


def test_stored_metrics_that_disagree_with_the_predictions_are_named_per_variant_and_key(tmp_path):
    run = load_run(write_run(tmp_path / "run"))
    summary = recompute_metrics(run)
    assert summary["accuracy"] == 0.8 and summary["n_test"] == 5
    run.stored_metrics = {"variants": {"svm": {**summary["variants"]["svm"], "accuracy": 1.0, "auc": 0.5}}}
    assert stored_differences(run, summary) == ["variant svm: accuracy stored 1.0 vs recomputed 0.8",
                                                f"variant svm: auc stored 0.5 vs recomputed {summary['auc']}"]
    run.stored_metrics = {"variants": {"linear": {}}}
    assert stored_differences(run, summary) == ["variant svm: not in the run's metrics.json"]
    run.stored_metrics = json.loads(json.dumps({"variants": summary["variants"]}))
    assert stored_differences(run, summary) == []


def test_a_run_without_test_predictions_is_refused_naming_its_roles(tmp_path):
    run = load_run(write_run(tmp_path / "run", roles="val"))
    with pytest.raises(RunDirError, match=r"run: predictions have no 'test' rows \(roles: \['val'\]\)"):
        recompute_metrics(run)
    run.split = None
    assert missing_predictions(run, "svm").empty
