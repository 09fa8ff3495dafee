"""External validation: a finished run applied to other people's photos (evaluate.py run=... data=folder)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facediag.data.folder import UnknownClassError
from facediag.evaluation.external import external_validation
from tests.conftest import DATA_DIR, compose_train, own_scores, run_python

pytestmark = pytest.mark.slow


@pytest.fixture
def other_people(tiny_dtl2_run, london_dir, tmp_path):
    """`<tmp>/external/{Female,MALE}/...`: neutral photos of 4 people per sex the run never saw."""
    info = pd.read_csv(london_dir / "london_info.csv", dtype=str)
    seen = set(pd.read_csv(tiny_dtl2_run / "manifest.csv", dtype={"subject": str})["subject"])
    split = pd.read_csv(tiny_dtl2_run / "split.csv", dtype={"subject": str})
    split = set(split.loc[split["role"] != "excluded", "subject"])  # people the run placed (saw or tested)
    root = tmp_path / "external"
    for sex, folder in (("female", "Female"), ("male", "MALE")):
        people = [p for p in info.loc[info.face_gender == sex, "face_id"] if p not in split][:4]
        assert len(people) == 4 and seen
        for person in people:
            (root / folder).mkdir(parents=True, exist_ok=True)
            (root / folder / f"{person}.jpg").symlink_to(london_dir / "neutral" / f"{person}_03.jpg")
    return root


def test_external_validation_scores_every_photo_and_names_renamed_resized_and_mirrored_training_photos(
    tiny_dtl2_run, other_people, tmp_path
):
    """Eight photos of people the run never saw, beside a renamed byte copy of a training photo, a resized copy and a
    mirrored copy: every photo is scored, the eight well and without a warning, each copy named in one warning."""
    from PIL import Image, ImageOps

    split = pd.read_csv(tiny_dtl2_run / "split.csv")
    seen = split[(split["role"] == "train") & (split["label"] == "female")]["path"].iloc[0]
    shutil.copy(seen, other_people / "Female" / "renamed_copy.jpg")  # the bytes, not the name, give it away
    train = split[(split["role"] == "train") & (split["label"] == "male")]["path"]
    resized, mirrored = train.iloc[0], train.iloc[1]
    with Image.open(resized) as image:
        image.resize((image.width // 2, image.height // 2)).save(other_people / "MALE" / "small_copy.jpg", quality=60)
    with Image.open(mirrored) as image:
        ImageOps.mirror(image).save(other_people / "MALE" / "mirrored.jpg", quality=85)
    copies = {other_people / "Female" / "renamed_copy.jpg", other_people / "MALE" / "small_copy.jpg",
              other_people / "MALE" / "mirrored.jpg"}
    cfg = compose_train(tmp_path, "data=folder", f"data.root={other_people}")

    summary = external_validation(tiny_dtl2_run, cfg.data, tmp_path / "report")

    assert summary["n"] == 11
    predictions = pd.read_csv(tmp_path / "report" / "external_predictions.csv")
    assert set(predictions["label"]) == {"female", "male"} and len(predictions) == 11
    unseen = predictions[~predictions["path"].isin({str(path) for path in copies})]
    assert len(unseen) == 8 and (unseen["pred"] == unseen["label"]).mean() >= 0.75
    assert (tmp_path / "report" / "report.html").is_file()
    warnings = summary["training_overlaps"]
    assert len(warnings) == 3  # the eight people the run never saw raise nothing
    (renamed,) = [w for w in warnings if w.startswith(str(other_people / "Female" / "renamed_copy.jpg"))]
    assert Path(seen).name in renamed and "train image" in renamed
    (small,) = [w for w in warnings if w.startswith(str(other_people / "MALE" / "small_copy.jpg"))]
    assert "near-duplicate" in small and Path(resized).name in small
    (mirror,) = [w for w in warnings if w.startswith(str(other_people / "MALE" / "mirrored.jpg"))]
    assert Path(mirrored).name in mirror and ("near-duplicate" in mirror or "same person" in mirror)
    # the run's own controls (measured on its test split) are not copied in: those scored here are external_controls
    assert "controls" in json.loads((tiny_dtl2_run / "metrics.json").read_text())
    written = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert "controls" not in summary and "controls" not in written


def test_an_unknown_class_folder_is_a_clear_error(tiny_dtl2_run, other_people, tmp_path):
    (other_people / "nonbinary").mkdir()
    (other_people / "nonbinary" / "x.jpg").symlink_to(next((other_people / "MALE").iterdir()).resolve())
    cfg = compose_train(tmp_path, "data=folder", f"data.root={other_people}")
    with pytest.raises(UnknownClassError, match="nonbinary"):
        external_validation(tiny_dtl2_run, cfg.data, tmp_path / "report")


def test_evaluate_cli_runs_external_validation_and_shows_what_moved(tiny_dtl2_run, other_people, tmp_path):
    result = run_python("evaluate.py", f"run={tiny_dtl2_run}", "data=folder", f"data.root={other_people}",
                        f"hydra.run.dir={tmp_path / 'ev'}", f"paths.data_dir={DATA_DIR}", "recalibrate=1")
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "ev"
    assert "accuracy" in result.stdout and (out / "external_predictions.csv").is_file()
    # the run's own test metrics beside the external ones, on the console, in a CSV and in the report
    assert "internal (the run's test split) vs external" in result.stdout
    table = pd.read_csv(out / "internal_vs_external.csv").set_index("metric")
    internal = json.loads((tiny_dtl2_run / "metrics.json").read_text())
    external = json.loads((out / "metrics.json").read_text())
    assert table.loc["accuracy", "internal"] == pytest.approx(internal["accuracy"])
    assert table.loc["accuracy", "external"] == pytest.approx(external["accuracy"])
    assert "Internal vs external: what moved" in (out / "report.md").read_text()
    # re-thresholded on one person per class, scored on the 6 others apart
    moved = json.loads((out / "rethreshold.json").read_text())
    assert len(moved["calibration_people"]) == 2 and moved["held_out_after"]["n"] == 6
    assert "re-thresholded on 2 people of the new site; the other 6 photos" in result.stdout


def own_test_photos_through_the_cli(run_dir: Path, tmp_path: Path) -> Path:
    """The run's own test photos as an external folder (``<tmp>/external``) through `evaluate.py run=... data=folder`:
    its output folder, once checked that every variant's scores equal predictions.csv's and that nothing is warned
    about (test photos are not training photos)."""
    predictions = pd.read_csv(run_dir / "predictions.csv")
    folder = tmp_path / "external"
    for i, row in enumerate(own_scores(run_dir).itertuples()):
        (folder / row.label).mkdir(parents=True, exist_ok=True)
        (folder / row.label / f"{i:02d}{Path(row.Index).suffix}").symlink_to(row.Index)
    result = run_python("evaluate.py", f"run={run_dir}", "data=folder", f"data.root={folder}",
                        f"hydra.run.dir={tmp_path / 'ev'}", f"paths.data_dir={DATA_DIR}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "WARNING" not in result.stdout  # test photos are not training photos
    external = pd.read_csv(tmp_path / "ev" / "external_predictions.csv")
    external["path"] = [str(Path(p).resolve()) for p in external["path"]]
    assert set(external["variant"]) == set(predictions["variant"])
    for variant, own in predictions.groupby("variant"):
        mine = external[external["variant"] == variant].set_index("path").loc[own["path"].map(resolved)]
        columns = [c for c in own.columns if c.startswith("score_")]
        np.testing.assert_allclose(mine[columns].to_numpy(float), own[columns].to_numpy(float), atol=1e-5)
        assert list(mine["label"]) == list(own["label"])
    return tmp_path / "ev"


@pytest.mark.parametrize("finished_run", ["tiny_dtl1_run", "tiny_dtl1_head_norm_run", "tiny_dsift_run"],
                         indirect=True)  # DTL2: test_the_cli_on_the_runs_own_test_photos_...
def test_external_validation_through_the_cli_gets_the_runs_own_test_scores(finished_run, tmp_path):
    """The run's own test photos as an external folder: every variant's scores equal predictions.csv's."""
    own_test_photos_through_the_cli(finished_run, tmp_path)


def resolved(path: str) -> str:
    return str(Path(path).resolve())


def test_no_usable_external_image_is_an_error_listing_every_file_and_why(tiny_dtl2_run, tmp_path):
    from PIL import Image

    root = tmp_path / "external"
    (root / "female").mkdir(parents=True)
    (root / "male").mkdir()
    Image.fromarray(np.full((120, 160, 3), 200, dtype=np.uint8)).save(root / "female" / "wall.png")
    (root / "male" / "broken.jpg").write_bytes(b"not a jpeg")
    cfg = compose_train(tmp_path, "data=folder", f"data.root={root}")
    with pytest.raises(ValueError, match="no usable image") as error:
        external_validation(tiny_dtl2_run, cfg.data, tmp_path / "report")
    assert "wall.png: no_face (no face found" in str(error.value)
    assert "broken.jpg: error" in str(error.value)


def test_the_cli_on_the_runs_own_test_photos_gives_the_methods_and_each_controls_own_scores(
    tiny_dtl2_run, tmp_path
):
    """The run's own test photos as an external folder through the CLI: the method's scores are its own
    predictions.csv's, and each control the run kept gives the scores of its own predictions.csv (the same eye-aligned
    crops, the same face region hidden: the run's training photos'), beside the method's external accuracy; a run
    without controls says so."""
    out = own_test_photos_through_the_cli(tiny_dtl2_run, tmp_path)
    written = json.loads((out / "metrics.json").read_text())
    for name in ("face_blind", "capture_only"):
        own = pd.read_csv(tiny_dtl2_run / "controls" / name / "predictions.csv")
        own = own[own["role"] == "test"].assign(path=lambda f: f["path"].map(resolved)).set_index("path")
        site = pd.read_csv(out / "controls" / name / "external_predictions.csv")
        site = site.assign(path=site["path"].map(resolved)).set_index("path").loc[own.index]
        columns = [c for c in own.columns if c.startswith("score_")]
        np.testing.assert_allclose(site[columns].to_numpy(float), own[columns].to_numpy(float), atol=1e-5)
        compared = written["external_controls"][name]["dtl2"]
        assert compared["n"] == len(own) and compared["accuracy"] == pytest.approx((own["pred"] == own["label"]).mean())
    assert set(written["external_controls"]) == {"face_blind", "capture_only"}
    assert "Controls on this site" in (out / "report.md").read_text()

    cfg = compose_train(tmp_path, "data=folder", f"data.root={tmp_path / 'external'}")
    bare = tmp_path / "bare_run"
    shutil.copytree(tiny_dtl2_run, bare, ignore=shutil.ignore_patterns("controls"))
    summary = external_validation(bare, cfg.data, tmp_path / "bare_report")
    assert summary["external_controls"] == {}
    assert any("kept no face_blind control" in line for line in summary["external_controls_not_scored"])
