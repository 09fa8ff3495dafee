"""Learning curves in `evaluate.py sweep=`: one point per method × training people per class, with intervals."""

from __future__ import annotations

import pandas as pd
import pytest

from facediag.evaluation import evaluate_sweep
from facediag.evaluation.curves import curve_figure
from tests.conftest import run_python
from tests.test_evaluate import write_fake_run

SIZES = (5, 10, None)


def fake_curve_sweep(root, n_folds: int = 3):
    """DTL2 and DSIFT runs at 5, 10 and all training people per class, 3 folds each; accuracy grows with size."""
    for size in SIZES:
        quality = {5: 0.6, 10: 0.75, None: 0.95}[size]
        for strategy, offset in (("dtl2", 0.0), ("dsift", -0.15)):
            for fold in range(n_folds):
                write_fake_run(root / f"{strategy}_{size}_{fold}", strategy=strategy, fold=fold, n_folds=n_folds,
                               n_people=60, quality=quality + offset,
                               extra={"data.train_subjects_per_class": size})


def test_evaluate_py_sweep_over_training_people_draws_curves_and_writes_their_table(tmp_path):
    fake_curve_sweep(tmp_path / "sweep")
    out = run_python("evaluate.py", f"sweep={tmp_path / 'sweep'}", f"hydra.run.dir={tmp_path / 'report'}")
    assert out.returncode == 0, out.stderr[-3000:]
    result = evaluate_sweep(tmp_path / "sweep")  # the pooled rows the table's points must equal (no files written)
    points = pd.read_csv(tmp_path / "report" / "learning_curves.csv")
    # dtl2 one variant, dsift two (linear, chi2): three curves of three points
    assert len(points) == 9 and set(points["train_subjects_per_class"].astype(str)) == {"5", "10", "all"}
    assert (points["n_runs"] == 3).all()
    dtl2 = points[points["method"] == "dlib_resnet/dlib_faces/dtl2"].set_index("train_subjects_per_class")
    pooled = {r.setting: r for r in result.rows if r.description["strategy"] == "dtl2"}
    assert len(pooled) == 3
    for row in pooled.values():
        size = row.setting.split("=")[1]
        point = dtl2.loc["all" if size == "None" else size]
        assert point["accuracy"] == pytest.approx(row.metrics["accuracy"])
        assert (point["accuracy_lo"], point["accuracy_hi"]) == pytest.approx(tuple(row.metrics["accuracy_ci"]))
        assert point["accuracy_lo"] <= point["accuracy"] <= point["accuracy_hi"]
    # 'all' is drawn at the mean number of training (train + val) people per class of its runs: 40 of 60 / 2
    assert dtl2.loc["all", "x"] == pytest.approx(20.0)
    assert dtl2.loc["5", "accuracy"] < dtl2.loc["all", "accuracy"]
    assert (tmp_path / "report" / "figures" / "learning_curve_london_sex.png").stat().st_size > 10_000
    report = (tmp_path / "report" / "report.md").read_text()
    assert "## Learning curves" in report and "all (≈20)" in report and "learning_curve_london_sex.png" in report


def test_a_perfect_point_whose_interval_bound_rounds_below_it_is_still_drawn():
    # Wilson (people) of 102 / 102 comes back as [0.9637, 0.9999999999999999]: the error bar is 0, not negative
    points = pd.DataFrame({"method": ["m", "m"], "x": [5.0, 40.8], "accuracy": [0.9, 1.0],
                           "accuracy_lo": [0.85, 0.9637], "accuracy_hi": [0.95, 1.0 - 1.1e-16],
                           "train_subjects_per_class": [5, "all"], "people_per_class": [5.0, 40.8]})
    figure = curve_figure(points, "london / sex")
    (bars,) = figure.axes[0].containers
    assert len(bars.lines[0].get_xdata()) == 2


def test_a_sweep_without_the_option_has_no_learning_curves(tmp_path):
    for fold in range(3):
        write_fake_run(tmp_path / "sweep" / f"run{fold}", fold=fold, n_folds=3)
    result = evaluate_sweep(tmp_path / "sweep", out_dir=tmp_path / "report")
    assert "learning_curves" not in result.files
    assert not (tmp_path / "report" / "learning_curves.csv").exists()
    assert "Learning curves" not in (tmp_path / "report" / "report.md").read_text()


def test_a_mean_over_repeats_outside_its_pooled_interval_still_draws():
    from facediag.evaluation.curves import curve_figure

    points = pd.DataFrame({"method": ["a", "a"], "x": [5.0, 10.0], "accuracy": [0.99, 0.9],
                           "accuracy_lo": [0.991, 0.85], "accuracy_hi": [1.0, 0.95],
                           "train_subjects_per_class": [5, 10], "people_per_class": [5.0, 10.0]})
    figure = curve_figure(points, "t")
    caps = figure.axes[0].containers[0]
    assert len(caps.lines[0].get_xdata()) == 2


def test_settings_stay_in_a_label_only_where_they_tell_two_curves_apart():
    from facediag.evaluation.curves import without_needless_settings

    frame = pd.DataFrame({"dataset": ["d"] * 4, "task": ["t"] * 4, "method": [
        "a+b/x/dtl2_fused [strategy.sources=[a, b]]", "a+b+g/x/dtl2_fused [strategy.sources=[a, b, g]]",
        "e/x/dtl2 [strategy.C_grid=[1]]", "e/x/dtl2 [strategy.C_grid=[10]]"]})
    assert list(without_needless_settings(frame)) == [
        "a+b/x/dtl2_fused", "a+b+g/x/dtl2_fused", "e/x/dtl2 [strategy.C_grid=[1]]", "e/x/dtl2 [strategy.C_grid=[10]]"]
