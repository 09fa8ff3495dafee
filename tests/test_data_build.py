"""Own photos through every entry point: `data=folder` trees of London faces mixed with broken files."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import run_python
from tests.owndata import add_broken_files, link, london_people, photos, resized_copy

pytestmark = pytest.mark.slow
FAST = ["logger=none", "callbacks=none", "trainer.enable_progress_bar=false", "preprocess.progress=false",
        "controls=[]"]  # no face-blind or capture-only control: tests/test_controls.py trains them


def sex_tree(london: Path, root: Path, per_class: int, skip: int = 0) -> Path:
    """female/ and male/ folders holding both photos of ``per_class`` people each (after the first ``skip``)."""
    people = london_people(london)
    for sex in ("female", "male"):
        ids = people.loc[people["face_gender"] == sex, "face_id"].iloc[skip : skip + per_class]
        for face_id in ids:
            for photo in photos(london, face_id):
                link(photo, root / sex / f"{face_id}_{photo.parent.name}.jpg")
    return root


@pytest.fixture(scope="module")
def tree(london_dir, tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    root = sex_tree(london_dir, tmp_path_factory.mktemp("own") / "photos", per_class=6)
    return root, add_broken_files(root / "female")


@pytest.fixture(scope="module")
def run_dir(tree, tmp_path_factory) -> Path:
    root, _ = tree
    out = tmp_path_factory.mktemp("run")
    result = run_python("train.py", "data=folder", f"data.root={root}", "data.n_folds=3", f"hydra.run.dir={out}", *FAST)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "accuracy" in result.stdout and "95% CI" in result.stdout
    return out


def test_train_on_a_folder_lists_every_file_with_a_status(tree, run_dir):
    root, broken = tree
    manifest = pd.read_csv(run_dir / "manifest.csv")
    on_disk = {str(p) for p in root.rglob("*") if p.is_symlink() or p.is_file()}
    assert set(manifest["path"]) == on_disk and len(on_disk) == 2 * 6 * 2 + 3
    status, reason = manifest.set_index("path")["status"], manifest.set_index("path")["reason"]
    assert {status[str(broken[kind])] for kind in ("broken_link", "text", "truncated")} == {"error"}
    assert reason[str(broken["broken_link"])].startswith("broken link") and reason[str(broken["truncated"])]
    assert (status == "ok").sum() == 24
    split = pd.read_csv(run_dir / "split.csv")
    assert set(split["subject_source"]) == {"identity"}  # every person's two photos found each other
    assert split.groupby("subject")["role"].nunique().max() == 1
    assert split["subject"].nunique() == 12


def test_evaluate_rereads_a_folder_run(run_dir, tmp_path):
    result = run_python("evaluate.py", f"run={run_dir}", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "report.html").is_file()


def test_evaluate_sweep_over_a_folder_run(run_dir, tmp_path):
    result = run_python("evaluate.py", f"sweep={run_dir}", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "folder / classes" in result.stdout


def test_external_validation_on_another_folder(london_dir, run_dir, tmp_path):
    other = sex_tree(london_dir, tmp_path / "other", per_class=2, skip=10)
    args = ("evaluate.py", f"run={run_dir}", "data=folder", f"data.root={other}", f"hydra.run.dir={tmp_path}/ev")
    result = run_python(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(pd.read_csv(tmp_path / "ev" / "external_manifest.csv")) == 8


def test_preprocess_module_reports_the_broken_files(tree, tmp_path):
    root, broken = tree
    result = run_python("-m", "facediag.preprocess", "data=folder", f"data.root={root}", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    report = pd.read_csv(tmp_path / "preprocess_report.csv").set_index("path")
    assert report.loc[str(broken["text"]), "status"] == "error"
    assert report.loc[str(broken["broken_link"]), "status"] == "error"


def test_predict_with_a_folder_run(london_dir, run_dir, tmp_path):
    photo = photos(london_dir, london_people(london_dir)["face_id"].iloc[-1])[0]
    result = run_python("-m", "facediag.predict", str(photo), f"run={run_dir}", f"out={tmp_path}", fresh=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "top-1" in result.stdout


def user_error(result) -> str:
    """The message of a user error: exit code 2, no traceback."""
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "HYDRA_FULL_ERROR" not in result.stderr
    return result.stderr


def test_an_empty_class_folder_is_a_clear_error_naming_it(tree, tmp_path):
    root = tmp_path / "photos"
    shutil.copytree(tree[0], root, symlinks=True)
    (root / "unknown-syndrome").mkdir()
    args = ("train.py", "data=folder", f"data.root={root}", "prepare_only=true", f"hydra.run.dir={tmp_path}/run")
    message = user_error(run_python(*args))
    assert "unknown-syndrome" in message and "holds no file" in message
    full = run_python(*args, env={"HYDRA_FULL_ERROR": "1"})  # the traceback added, nothing else changed
    assert full.returncode == 2 and "Traceback" in full.stderr and "unknown-syndrome" in full.stderr


def test_a_missing_folder_and_an_unknown_class_are_clear_errors(tree, tmp_path):
    run = f"hydra.run.dir={tmp_path}/r"
    nowhere = f"data.root={tmp_path}/nowhere"
    message = user_error(run_python("train.py", "data=folder", nowhere, "prepare_only=true", run))
    assert "not found" in message and "nowhere" in message
    message = user_error(run_python("train.py", "data=folder", "prepare_only=true", run))
    assert "data.root" in message
    message = user_error(run_python("train.py", "data=dsf", f"data.root={tree[0]}", "prepare_only=true", run))
    assert "match no configured class" in message and "female" in message


def test_a_near_duplicate_under_two_labels_is_refused_naming_both_files(tree, tmp_path):
    root = tmp_path / "photos"
    shutil.copytree(tree[0], root, symlinks=True)
    original = sorted((root / "female").glob("*_neutral.jpg"))[0]
    copy = resized_copy(original.resolve(), root / "male" / "copy_of_a_female_photo.jpg")
    message = user_error(
        run_python("train.py", "data=folder", f"data.root={root}", "prepare_only=true", f"hydra.run.dir={tmp_path}/r")
    )
    assert "near-duplicate" in message and str(original) in message and str(copy) in message
    assert os.path.exists(tmp_path / "r" / "FAILED")
