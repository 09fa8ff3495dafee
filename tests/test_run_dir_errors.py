"""A run dir that breaks the run-dir contract (facediag.evaluation.runs) is refused with a message naming the file
and what is wrong; small run dirs written by the test, no training."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from facediag.evaluation.runs import RunDirError, check_predictions, find_run_dirs, load_run, read_config

CLASSES = ["female", "male"]


def predictions(**changes) -> pd.DataFrame:
    """Two test rows of one variant, scores per class."""
    frame = pd.DataFrame({"path": ["a.jpg", "b.jpg"], "label": CLASSES, "role": ["test", "test"],
                          "variant": ["svm", "svm"], "score_female": [0.8, 0.3], "score_male": [0.2, 0.7]})  # fmt: skip
    for column, values in changes.items():
        frame[column] = values
    return frame


def run_dir(folder: Path, config: str = "task_name: train\ndata:\n  name: london\n", rows: pd.DataFrame | None = None,
            metrics: str | None = None) -> Path:  # fmt: skip
    """A run dir: ``.hydra/config.yaml``, ``predictions.csv`` and optionally ``metrics.json``."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(config)
    (predictions() if rows is None else rows).to_csv(folder / "predictions.csv", index=False)
    if metrics is not None:
        (folder / "metrics.json").write_text(metrics)
    return folder


def test_a_well_formed_run_dir_loads_with_its_classes_and_positive_class(tmp_path):
    run = load_run(run_dir(tmp_path / "run"))
    assert run.classes == CLASSES and run.positive == "male" and run.variants == ["svm"]
    assert run.setting("data.name") == "london" and run.setting("data.fold", "none") == "none"


def test_a_failed_run_has_no_variants_and_reports_its_last_line(tmp_path):
    folder = run_dir(tmp_path / "run")
    (folder / "FAILED").write_text("Traceback ...\nValueError: no faces\n\n")
    run = load_run(folder)
    assert run.failed and run.variants == [] and run.failure_reason == "ValueError: no faces"


def test_the_config_is_read_from_run_config_yaml_without_hydra_and_a_folder_without_either_is_named(tmp_path):
    folder = tmp_path / "python_run"
    folder.mkdir()
    with pytest.raises(RunDirError, match=f"{folder}: neither .hydra/config.yaml nor run_config.yaml"):
        read_config(folder)
    (folder / "run_config.yaml").write_text("data:\n  task: sex\n")
    assert read_config(folder) == {"data": {"task": "sex"}}
    (folder / "run_config.yaml").write_text("- a list\n- not a mapping\n")
    with pytest.raises(RunDirError, match="run_config.yaml: expected a mapping at the top level"):
        read_config(folder)
    (folder / "run_config.yaml").write_text("data: [unclosed\n")
    with pytest.raises(RunDirError, match="run_config.yaml: cannot parse the config"):
        read_config(folder)


@pytest.mark.parametrize(("rows", "message"), [
    (predictions().drop(columns="role"), r"missing column\(s\) \['role'\]"),
    (predictions().drop(columns="score_male"), "needs one score_<class> column per class"),
    (predictions().rename(columns={"score_male": "score_man"}),
     r"score columns \['female', 'man'\] do not match the run's classes"),
    (predictions().iloc[:0], "no rows"),
    (predictions(label=["female", "other"]), r"labels \['other'\] are not among the classes"),
    (predictions(score_male=[0.2, "n/a"]), r"empty, non-numeric or infinite scores \(e.g. rows for \['b.jpg'\]\)"),
    (predictions(path=["a.jpg", "a.jpg"]), r"1 duplicate \(path, role, variant\) rows, e.g. a.jpg"),
])  # fmt: skip
def test_predictions_that_break_the_contract_are_refused_with_the_reason(rows, message):
    with pytest.raises(RunDirError, match=f"^my.csv: {message}"):
        check_predictions(rows, CLASSES, "my.csv")


def test_a_run_dir_s_unreadable_files_are_named(tmp_path):
    with pytest.raises(RunDirError, match="not a directory"):
        load_run(tmp_path / "absent")
    broken = run_dir(tmp_path / "metrics", metrics="{not json")
    with pytest.raises(RunDirError, match=f"{broken / 'metrics.json'}: cannot read"):
        load_run(broken)
    bare = run_dir(tmp_path / "bare")
    (bare / "predictions.csv").unlink()
    with pytest.raises(RunDirError, match="predictions.csv: missing .the run has neither predictions nor a FAILED"):
        load_run(bare)
    empty = run_dir(tmp_path / "empty")
    (empty / "predictions.csv").write_text("")
    with pytest.raises(RunDirError, match="predictions.csv: cannot read the predictions .EmptyDataError"):
        load_run(empty)
    wrong = run_dir(tmp_path / "positive", metrics=json.dumps({"positive": "dog"}))
    with pytest.raises(RunDirError, match=rf"{wrong}: positive class 'dog' is not one of the classes"):
        load_run(wrong)


def test_a_sweep_finds_training_runs_but_not_evaluations_and_names_a_pattern_that_matches_nothing(tmp_path):
    good = run_dir(tmp_path / "sweep" / "0")
    run_dir(tmp_path / "sweep" / "eval", config="task_name: evaluate\n")
    unreadable = run_dir(tmp_path / "sweep" / "1", config="task_name: [unclosed\n")  # reported later as failed
    assert find_run_dirs(tmp_path / "sweep") == [good.resolve(), unreadable.resolve()]
    with pytest.raises(FileNotFoundError, match=r"sweep: .*/nothing_\* matches no existing folder"):
        find_run_dirs(str(tmp_path / "nothing_*"))
