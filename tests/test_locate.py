"""The demo data found one way everywhere: FACEDIAG_DATA_DIR (relative or absolute), else <repo>/data."""

from pathlib import Path

import pytest

from facediag.core.config import REPO_ROOT, data_dir
from facediag.data.locate import DemoDataUnavailable, london_faces


def test_a_relative_data_dir_is_made_absolute_for_the_demo_and_the_tests(tmp_path: Path, monkeypatch):
    (tmp_path / "work").mkdir()
    (tmp_path / "shared" / "data" / "london-faces").mkdir(parents=True)
    (tmp_path / "shared" / "data" / "london-faces" / "london_info.csv").write_text("face_id\n")
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setenv("FACEDIAG_DATA_DIR", "../shared/data")
    assert data_dir() == tmp_path / "shared" / "data"
    assert london_faces(download=False) == tmp_path / "shared" / "data" / "london-faces"

    from hydra import compose, initialize_config_dir

    from facediag.core.config import CONFIG_DIR
    from facediag.training.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"paths.output_dir={tmp_path / 'run'}"])
    assert Path(cfg.data.root) == tmp_path / "shared" / "data" / "london-faces"


def test_without_the_variable_the_checkouts_data_folder_is_used(monkeypatch):
    monkeypatch.delenv("FACEDIAG_DATA_DIR", raising=False)
    assert data_dir() == (REPO_ROOT / "data").resolve()


def test_absent_faces_that_cannot_be_fetched_give_the_reason(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("FACEDIAG_DATA_DIR", str(tmp_path))
    where = tmp_path / "london-faces"
    with pytest.raises(DemoDataUnavailable, match=rf"London faces not found at {where}.*FACEDIAG_DATA_DIR"):
        london_faces(download=False)
