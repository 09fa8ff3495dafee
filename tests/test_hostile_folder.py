"""A user's folder with every kind of bad file, through the CLI as a user runs it (also with HYDRA_FULL_ERROR=1):
the audit names every problem and exits 0, training refuses with the way out and still writes manifest.csv,
every file gets one row with the same status in manifest.csv, preprocess_report.csv and predict's CSV, and the
console carries no third-party tip or deprecation line."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import DATA_DIR
from tests.owndata import london_people, photos, run_cli

pytestmark = pytest.mark.slow

FULL_ERROR = {"HYDRA_FULL_ERROR": "1", "FACEDIAG_DATA_DIR": str(DATA_DIR)}
QUIET = ["preprocess.progress=false", "num_threads=1"]


def hostile_folder(london: Path, root: Path) -> dict[str, Path]:
    """Three London people per class copied in, then: an empty class folder, a truncated JPEG, a text file named
    .jpg, a broken link, a hidden .DS_Store, a photo without a face and a female photo copied under male."""
    people = london_people(london)
    for sex in ("female", "male"):
        for face_id in people.loc[people["face_gender"] == sex, "face_id"].iloc[:3]:
            for photo in photos(london, face_id):
                (root / sex).mkdir(parents=True, exist_ok=True)
                shutil.copy(photo, root / sex / f"{face_id}_{photo.parent.name}.jpg")
    female = sorted((root / "female").glob("*.jpg"))[0]
    planted = {"empty": root / "empty_class", "truncated": root / "male" / "truncated.jpg",
               "text": root / "male" / "notes.jpg", "broken_link": root / "male" / "gone.jpg",
               "hidden": root / "female" / ".DS_Store", "no_face": root / "female" / "wall.jpg",
               "duplicate": root / "male" / "copy_of_a_female_photo.jpg", "original": female}  # fmt: skip
    planted["empty"].mkdir()
    planted["truncated"].write_bytes(female.read_bytes()[:3000])
    planted["text"].write_text("this is not an image\n")
    os.symlink(root / "male" / "does-not-exist.jpg", planted["broken_link"])
    planted["hidden"].write_bytes(b"\x00\x00\x00\x01Bud1")
    Image.fromarray(np.full((200, 300, 3), 180, dtype=np.uint8)).save(planted["no_face"])
    shutil.copy(female, planted["duplicate"])
    return planted


@pytest.fixture(scope="module")
def hostile(london_dir, tmp_path_factory) -> tuple[Path, dict[str, Path], Path]:
    """(the folder, its planted files, a cache of its own: a cold run builds Lightning Trainers)."""
    root = tmp_path_factory.mktemp("hostile") / "photos"
    return root, hostile_folder(london_dir, root), tmp_path_factory.mktemp("hostile_cache")


def files_of(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*") if not p.is_dir()}


def test_the_audit_names_every_problem_and_exits_0(hostile, tmp_path):
    root, planted, cache = hostile
    out = tmp_path / "audit"
    result = run_cli("-m", "facediag.audit", "data=folder", f"data.root={root}", f"hydra.run.dir={out}",
                     f"paths.cache_dir={cache}", *QUIET[:1], env=FULL_ERROR)  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "empty_class" in result.stdout and "holds no file" in result.stdout
    html = (out / "audit.html").read_text()
    for path in planted.values():
        assert str(path) in html, path
    assert "broken link" in html and "not a recognised image" in html and "Truncated" in html
    assert "same face under another class" in html and "no usable image" in html
    table = pd.read_csv(out / "audit.csv", keep_default_na=False).set_index("path")
    assert set(table.index) == files_of(root)
    status = table["status"]
    assert {status[str(planted[kind])] for kind in ("broken_link", "text", "truncated")} == {"error"}
    assert (status[str(planted["hidden"])], status[str(planted["no_face"])]) == ("excluded", "no_face")
    assert str(planted["duplicate"]) in table.loc[str(planted["original"]), "identical_to"]
    assert (out / "audit.md").is_file()


def test_training_refuses_with_the_way_out_and_still_writes_the_manifest(hostile, tmp_path):
    root, planted, cache = hostile
    common = ("train.py", "data=folder", f"data.root={root}", f"paths.cache_dir={cache}", *QUIET)
    refused = run_cli(*common, f"hydra.run.dir={tmp_path / 'a'}")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
    assert "empty_class" in refused.stderr and "data.exclude=[empty_class]" in refused.stderr
    manifest = pd.read_csv(tmp_path / "a" / "manifest.csv", keep_default_na=False)
    assert set(manifest["path"]) == files_of(root) and manifest["reason"][manifest["status"] != "ok"].all()

    full = run_cli(*common, "data.classes=[female,male]", f"hydra.run.dir={tmp_path / 'b'}", env=FULL_ERROR)
    assert full.returncode != 0 and "Traceback" in full.stderr
    assert "identical image bytes under several labels" in full.stderr and str(planted["duplicate"]) in full.stderr
    assert "left out" in full.stdout + full.stderr and "empty_class" in full.stdout + full.stderr
    assert set(pd.read_csv(tmp_path / "b" / "manifest.csv")["path"]) == files_of(root)


@pytest.fixture(scope="module")
def trained(hostile, tmp_path_factory) -> tuple[Path, Path, str]:
    """A DTL1 run (Lightning fits and tests a checkpoint) on the folder without the duplicate (its only refusal),
    the empty class left out: (run, folder, console output)."""
    root, planted, cache = hostile
    usable = tmp_path_factory.mktemp("hostile_usable") / "photos"
    shutil.copytree(root, usable, symlinks=True)
    (usable / planted["duplicate"].relative_to(root)).unlink()
    run = tmp_path_factory.mktemp("hostile_run")
    result = run_cli("train.py", "data=folder", f"data.root={usable}", "data.exclude=[empty_class]", "data.n_folds=3",
                     "strategy=dtl1", "strategy.max_epochs=1", "data.batch_size=16", f"hydra.run.dir={run}",
                     f"paths.cache_dir={cache}", *QUIET, env=FULL_ERROR)  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return run, usable, result.stdout + result.stderr


def test_the_console_has_no_third_party_tip_or_deprecation_and_names_the_tensorboard_run(trained):
    run, _, console = trained
    assert "GPU available" in console and "Restoring states from the checkpoint" in console  # Lightning ran
    for line in ("Tip:", "litlogger", "deprecated", "Deprecat", "ckpt_path"):
        assert line not in console, line
    assert [p.name for p in (run / "tensorboard").iterdir()] == ["dlib_resnet-dlib_faces-dtl1_classes_fold0_seed42"]


def test_the_printed_split_table_counts_every_file_and_matches_the_run(trained):
    run, usable, console = trained
    lines = console.split("files per class and role")[1].splitlines()
    header = next(line.split() for line in lines if line.split()[:3] == ["train", "val", "test"])
    total = next(line.split()[1:] for line in lines if line.startswith("total"))
    counts = dict(zip(header, map(int, total), strict=True))
    metrics = pd.read_json(run / "metrics.json", typ="series")
    assert (counts["train"], counts["val"], counts["test"]) == (metrics["n_train"], metrics["n_val"], metrics["n_test"])
    assert counts["total"] == len(files_of(usable)) and counts["no_face"] == 1 and counts["error"] == 3


def test_predict_writes_one_row_per_file_with_the_status_manifest_and_report_give(hostile, trained, tmp_path):
    root, planted, _ = hostile
    run, usable, _ = trained
    out = tmp_path / "predictions.csv"
    result = run_cli("-m", "facediag.predict", str(root), f"run={run}", f"out={out}", env=FULL_ERROR)
    assert result.returncode == 0, result.stderr[-3000:]
    predicted = pd.read_csv(out, keep_default_na=False)
    assert sorted(predicted["path"]) == sorted(files_of(root))  # the broken link and the hidden file included
    manifest = pd.read_csv(run / "manifest.csv", keep_default_na=False)
    report = pd.read_csv(run / "preprocess_report.csv", keep_default_na=False)

    def by_name(frame: pd.DataFrame, folder: Path) -> pd.DataFrame:
        names = frame["path"].map(lambda p: Path(p).relative_to(folder).as_posix())
        return frame.set_index(names)[["status", "reason"]]

    # a scored photo with a flag is "flagged" in predict (the run trained on most of these photos: their people
    # overlap the training people); the manifest and the report only know it was read and found a face
    flagged = predicted["status"] == "flagged"
    assert predicted.loc[flagged, "flags"].str.contains("overlaps_training_person").sum() >= 6
    predicted.loc[flagged, ["status", "reason"]] = ["ok", ""]
    predicted, manifest, report = by_name(predicted, root), by_name(manifest, usable), by_name(report, usable)
    assert len(manifest) == len(predicted) - 1  # all but the duplicate, left out of the training copy
    pd.testing.assert_frame_equal(manifest, predicted.loc[manifest.index])
    pd.testing.assert_frame_equal(report, manifest.loc[report.index])
    assert predicted.loc["female/.DS_Store", "status"] == "excluded"
    assert predicted.loc[["male/gone.jpg", "female/wall.jpg"], "status"].tolist() == ["error", "no_face"]
