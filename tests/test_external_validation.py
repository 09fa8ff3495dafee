"""External validation: a finished run applied to other people's photos (evaluate.py run=... data=folder)."""

import subprocess
import sys

import pandas as pd
import pytest

from facediag.data.folder import UnknownClassError
from facediag.evaluation.external import external_validation
from tests.conftest import DATA_DIR, REPO, compose_train

pytestmark = pytest.mark.slow


@pytest.fixture
def other_people(tiny_dtl2_run, london_dir, tmp_path):
    """`<tmp>/external/{Female,MALE}/...`: neutral photos of 4 people per sex the run never saw."""
    info = pd.read_csv(london_dir / "london_info.csv", dtype=str)
    seen = set(pd.read_csv(tiny_dtl2_run / "manifest.csv", dtype={"subject": str})["subject"])
    split = set(pd.read_csv(tiny_dtl2_run / "split.csv", dtype={"subject": str})["subject"])
    root = tmp_path / "external"
    for sex, folder in (("female", "Female"), ("male", "MALE")):
        people = [p for p in info.loc[info.face_gender == sex, "face_id"] if p not in split][:4]
        assert len(people) == 4 and seen
        for person in people:
            (root / folder).mkdir(parents=True, exist_ok=True)
            (root / folder / f"{person}.jpg").symlink_to(london_dir / "neutral" / f"{person}_03.jpg")
    return root


def test_external_validation_scores_every_photo_with_the_runs_model(tiny_dtl2_run, other_people, tmp_path):
    cfg = compose_train(tmp_path, "data=folder", f"data.root={other_people}")
    summary = external_validation(tiny_dtl2_run, cfg.data, tmp_path / "report")
    assert summary["n"] == 8 and summary["accuracy"] >= 0.75
    predictions = pd.read_csv(tmp_path / "report" / "external_predictions.csv")
    assert set(predictions["label"]) == {"female", "male"} and len(predictions) == 8
    assert (tmp_path / "report" / "report.html").is_file()


def test_an_unknown_class_folder_is_a_clear_error(tiny_dtl2_run, other_people, tmp_path):
    (other_people / "nonbinary").mkdir()
    (other_people / "nonbinary" / "x.jpg").symlink_to(next((other_people / "MALE").iterdir()).resolve())
    cfg = compose_train(tmp_path, "data=folder", f"data.root={other_people}")
    with pytest.raises(UnknownClassError, match="nonbinary"):
        external_validation(tiny_dtl2_run, cfg.data, tmp_path / "report")


def test_evaluate_cli_runs_external_validation(tiny_dtl2_run, other_people, tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "evaluate.py"), f"run={tiny_dtl2_run}", "data=folder", f"data.root={other_people}",
         f"hydra.run.dir={tmp_path / 'ev'}", f"paths.data_dir={DATA_DIR}"],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "accuracy" in result.stdout and (tmp_path / "ev" / "external_predictions.csv").is_file()
