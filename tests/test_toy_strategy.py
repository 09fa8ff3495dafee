"""A strategy defined in one module (tests/toy_strategy.py) trains, predicts, explains and is reported, with no
other file of the package knowing it: the strategy registry and its Predictor are the whole contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import train_cli
from tests.toy_strategy import MEANS

pytestmark = pytest.mark.slow
TOY = "+strategy={_target_: tests.toy_strategy.MeanColour, name: toy_mean_colour, size: 64}"


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory, shared_cache, london_dir) -> Path:
    """A toy run made the way users make one: `python train.py ~strategy +strategy={_target_: ...}`."""
    run_dir = tmp_path_factory.mktemp("toy_sweep") / "toy"
    return train_cli(run_dir, shared_cache, "~strategy", TOY)


def test_a_toy_strategy_trains_through_train_py_and_keeps_its_own_model_file(toy_run):
    metrics = json.loads((toy_run / "metrics.json").read_text())
    assert metrics["strategy"] == metrics["variant"] == "toy_mean_colour"
    assert metrics["backbone"] is None and metrics["macs"] is None  # uses_backbone = False, asked of the class
    assert np.load(toy_run / MEANS)["means"].shape == (2, 3)
    assert 0.0 <= metrics["val_accuracy"] <= 1.0


def test_a_toy_run_predicts_its_own_test_scores_through_the_registry(toy_run, tmp_path):
    from facediag.apply.predict import main
    from facediag.apply.trained_run import TrainedRun

    own = pd.read_csv(toy_run / "predictions.csv").set_index("path")
    run = TrainedRun(toy_run)
    scored = run.score(list(own.index))
    assert scored.paths == list(own.index) and run.crop.size == 64 and scored.crops.shape[1:] == (64, 64, 3)
    np.testing.assert_allclose(scored.scores, own[["score_female", "score_male"]].to_numpy(), atol=1e-9)
    out = tmp_path / "predicted.csv"
    assert main([*own.index[:2], f"run={toy_run}", f"out={out}"]) == 0
    table = pd.read_csv(out)
    assert list(table["top1"]) == list(own["pred"].iloc[:2])


def test_a_toy_run_is_explained_by_occlusion_and_refuses_gradcam(toy_run, tmp_path):
    from facediag.apply.explain import Explainer, main
    from facediag.apply.trained_run import TrainedRun

    photo = str(pd.read_csv(toy_run / "predictions.csv")["path"].iloc[0])
    assert main([photo, f"run={toy_run}", f"out={tmp_path}"]) == 0
    row = pd.read_csv(tmp_path / "explain.csv").iloc[0]
    assert row["method"] == "occlusion"
    saliency = np.load(tmp_path / f"{row['stem']}_saliency.npy")
    assert saliency.shape == (64, 64) and np.ptp(saliency) > 0  # covering the face changes its mean colour
    with pytest.raises(ValueError, match="Grad-CAM needs a CNN run"):
        Explainer(TrainedRun(toy_run), "gradcam")


def test_a_toy_run_appears_in_the_sweep_report_and_its_methods_paragraph(toy_run, tmp_path):
    from facediag.evaluation import evaluate_run, evaluate_sweep

    evaluate_sweep(toy_run.parent, out_dir=tmp_path / "sweep")
    report = pd.read_csv(tmp_path / "sweep" / "report.csv")
    assert list(report["strategy"]) == ["toy_mean_colour"]
    markdown = (tmp_path / "sweep" / "report.md").read_text()
    assert "the mean colour of the aligned face, nearest class mean" in markdown
    assert "crops of 64 px (dlib template, padding 0.25)" in markdown and "None" not in markdown
    evaluate_run(toy_run, out_dir=tmp_path / "run")  # saliency by occlusion, the feature map of its mean colours
    single = (tmp_path / "run" / "report.md").read_text()
    assert "occlusion sensitivity" in single and "t-SNE of the toy_mean_colour features" in single
