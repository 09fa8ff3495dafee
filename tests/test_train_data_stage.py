import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import DATA_DIR, REPO, new_process_environment, run_python


def run_train(*overrides: str) -> subprocess.CompletedProcess:
    return run_python("train.py", f"paths.data_dir={DATA_DIR}", *overrides)


@pytest.mark.slow
def test_train_writes_a_204_row_manifest_and_a_split_without_subject_leaks(london_dir, tmp_path):
    result = run_train("data=london", "data.task=sex", "prepare_only=true", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = pd.read_csv(tmp_path / "manifest.csv", dtype={"subject": str})
    split = pd.read_csv(tmp_path / "split.csv", dtype={"subject": str})
    assert len(manifest) == 204 and list(manifest.columns)[:7] == [
        "path",
        "label",
        "subject",
        "sha256",
        "width",
        "height",
        "status",
    ]
    assert list(split.columns)[:5] == ["path", "subject", "label", "role", "fold"]
    test_people = set(split.loc[split.role == "test", "subject"])
    fit_people = set(split.loc[split.role.isin(["train", "val"]), "subject"])
    assert test_people and fit_people and not test_people & fit_people
    assert "female" in result.stdout and "test" in result.stdout


@pytest.mark.slow
def test_two_runs_started_together_get_separate_run_dirs(london_dir, tmp_path):
    command = [
        sys.executable,
        str(REPO / "train.py"),
        f"paths.data_dir={DATA_DIR}",
        "prepare_only=true",
        f"paths.log_dir={tmp_path}",
    ]
    procs = [
        subprocess.Popen(command, cwd=REPO, env=new_process_environment(), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()[-3000:]
    run_dirs = [p.parent for p in Path(tmp_path, "runs").rglob("split.csv")]
    assert len(set(run_dirs)) == 2


@pytest.mark.slow
def test_train_subjects_per_class_subsamples_training_people_and_keeps_the_test_fold(london_dir, tmp_path):
    splits = {}
    for size in ("null", "5"):
        result = run_train("data=london", "data.task=sex_expression", "data.n_folds=5", "data.fold=1",
                           f"data.train_subjects_per_class={size}", "prepare_only=true",
                           f"hydra.run.dir={tmp_path / size}")
        assert result.returncode == 0, result.stderr[-3000:]
        splits[size] = pd.read_csv(tmp_path / size / "split.csv", dtype={"subject": str})
    full, small = splits["null"], splits["5"]
    assert small.loc[small.role == "test", "path"].tolist() == full.loc[full.role == "test", "path"].tolist()
    fit = small[small.role.isin(["train", "val"])]
    assert fit.groupby("label")["subject"].nunique().tolist() == [5, 5, 5, 5]
    assert len(full[full.role.isin(["train", "val"])]) > 3 * len(fit)
