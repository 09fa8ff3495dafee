"""The methods paragraph of a sweep table (facediag.evaluation.methods) names a row it cannot describe as the table
does, and says when every run failed; the preprocessing's model files (facediag.preprocess.landmark_weights) say
what is missing and where it goes. Rows and folders written by the test, no model loaded."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from facediag.evaluation.methods import describe_model, describe_row, methods_paragraph
from facediag.evaluation.runs import Run
from facediag.evaluation.sweep import Entry, Row
from facediag.preprocess.landmark_weights import LazyModel, ModelUnavailableError, dlib_model_path, fan_weight_path

DESCRIPTION = {"dataset": "london", "task": "sex", "backbone": "dlib_resnet", "weights": "dlib_faces",
               "strategy": "dtl2"}  # fmt: skip


def row_of(tmp_path: Path, config: dict, loaded: bool = True, status: str = "ok") -> Row:
    """A table row of one run dir (``loaded``: its Run read; the folder holds no run_config.yaml)."""
    run = Run(tmp_path, config, classes=["female", "male"]) if loaded else None
    return Row([Entry(tmp_path, config, run)], "svm", DESCRIPTION, status=status)


@pytest.mark.parametrize("config", [
    {"strategy": {"name": "gone_xyz"}},  # a strategy no longer installed
    {"strategy": {"name": "gone_xyz"}, "backbone": {"name": "no_such_backbone_xyz"}},  # nor its backbone
    {"strategy": {"name": "dtl2"}, "backbone": {"name": "dlib_resnet"}},  # its model files are gone
])  # fmt: skip
def test_a_row_whose_model_cannot_be_read_is_named_as_the_table_names_it(tmp_path, config):
    row = row_of(tmp_path, config)
    assert describe_row(row) is None
    assert describe_model(row) == "dlib_resnet/dlib_faces/dtl2 svm"
    assert describe_model(row_of(tmp_path, config, loaded=False)) == "dlib_resnet/dlib_faces/dtl2 svm"


def test_a_table_of_failed_runs_says_so_in_its_methods_paragraph(tmp_path):
    failed = row_of(tmp_path, {}, loaded=False, status="failed")
    assert methods_paragraph([failed], ["female", "male"], "male") == \
        "Methods: every run of this table failed (see the failed runs)."


def test_a_missing_model_file_is_named_with_where_it_should_be(tmp_path, monkeypatch):
    with pytest.raises(ModelUnavailableError, match="dlib model no_such_model.dat not found at .*no_such_model.dat"):
        dlib_model_path("no_such_model.dat")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ModelUnavailableError) as missing:
        fan_weight_path("s3fd-619a316812.pth", download=False)
    message = str(missing.value)
    assert "(downloads are switched off)" in message and f"place them in {tmp_path / 'hub' / 'checkpoints'}" in message
    assert "Or use preprocess=dlib, which works offline." in message


class Counted(LazyModel):
    loads = 0

    def _load(self):
        Counted.loads += 1
        return object()


def test_a_lazy_model_loads_once_and_is_dropped_when_sent_to_a_worker():
    holder = Counted()
    assert holder.model is holder.model and Counted.loads == 1
    copy = pickle.loads(pickle.dumps(holder))
    assert copy._model is None and holder._model is not None
    with pytest.raises(NotImplementedError):
        getattr(LazyModel(), "model")  # noqa: B009 (the property loads the model)
