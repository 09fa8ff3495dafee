"""Power curves and the minimum detectable effect (facediag.evaluation.power) from a synthetic sweep table:
known accuracies and intervals in, known MDE out."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from facediag.evaluation.power import (
    IDEAL,
    add_power_curves,
    ceiling_display,
    ceiling_share,
    mde_display,
    mde_table,
    power_figure,
    power_points,
)
from facediag.evaluation.report import Report

# method A: detected from 1 SD with 5 people, from 0.5 SD with all; B never (its 2 SD interval touches chance);
# C's null row is above chance (a shortcut: flagged)
SWEEP = """\
dataset,task,method,train_subjects_per_class,people_per_class,strength,n,accuracy,accuracy_lo,accuracy_hi,chance
sim,condition,A,5,5,0.0,102,0.21,0.14,0.30,0.2
sim,condition,A,5,5,0.5,102,0.26,0.19,0.35,0.2
sim,condition,A,5,5,1.0,102,0.40,0.31,0.50,0.2
sim,condition,A,5,5,2.0,102,0.70,0.60,0.78,0.2
sim,condition,A,all,16.2,0.0,102,0.19,0.12,0.28,0.2
sim,condition,A,all,16.2,0.5,102,0.33,0.25,0.43,0.2
sim,condition,A,all,16.2,1.0,102,0.55,0.45,0.64,0.2
sim,condition,A,all,16.2,2.0,102,0.90,0.83,0.95,0.2
sim,condition,B,5,5,0.0,102,0.20,0.13,0.29,0.2
sim,condition,B,5,5,1.0,102,0.22,0.15,0.31,0.2
sim,condition,B,5,5,2.0,102,0.28,0.20,0.37,0.2
sim,condition,C,5,5,0.0,102,0.35,0.26,0.45,0.2
sim,condition,C,5,5,2.0,102,0.40,0.31,0.50,0.2
"""


def sweep_points() -> pd.DataFrame:
    return pd.read_csv(io.StringIO(SWEEP), dtype={"train_subjects_per_class": str})


def test_the_mde_is_the_smallest_strength_whose_interval_lies_above_chance():
    mde = mde_table(sweep_points()).set_index(["method", "train_subjects_per_class"])
    assert mde.loc[("A", "5"), "mde"] == 1.0
    assert (mde.loc[("A", "5"), "accuracy_lo"], mde.loc[("A", "5"), "accuracy_hi"]) == (0.31, 0.50)
    assert mde.loc[("A", "all"), "mde"] == 0.5 and mde.loc[("A", "all"), "accuracy"] == 0.33
    assert np.isnan(mde.loc[("B", "5"), "mde"]) and mde.loc[("B", "5"), "max_strength"] == 2.0
    assert mde.loc[("C", "5"), "mde"] == 2.0 and mde.loc[("C", "5"), "null_above_chance"]
    assert not mde.loc[("A", "5"), "null_above_chance"]


def test_the_mde_display_names_the_interval_or_says_not_detected_and_flags_a_null_above_chance():
    table = mde_display(mde_table(sweep_points())).set_index("method")
    assert table.loc["A", "5"] == "1 SD: 0.400 [0.310, 0.500]"
    assert table.loc["B", "5"] == "not detected (≤ 2 SD)" and table.loc["B", "all (≈16)"] == "–"
    assert table.loc["C", "5"].endswith("(null above chance!)")


def test_the_power_figure_draws_one_panel_per_training_size():
    figure = power_figure(sweep_points(), "sim / condition")
    assert len(figure.axes) == 2
    assert len(figure.axes[0].get_lines()) >= 1 and figure.axes[1].get_title().startswith("all (≈16)")


def test_a_sweep_without_strengths_adds_no_power_section(tmp_path):
    report = Report("sweep")
    assert power_points([]).empty
    assert add_power_curves([], report, tmp_path) == {} and not (tmp_path / "mde.csv").exists()


def test_the_simulated_power_experiment_sweeps_strength_training_people_and_methods_on_simulated_trees(tmp_path):
    from tests.test_presets import compose_hydra, sweep_jobs

    cfg = compose_hydra(tmp_path, "experiment=simulated_power")
    assert cfg.data.name == "simulated" and cfg.data.source._target_.endswith("SimulatedDataset")
    jobs = sweep_jobs(cfg)
    assert {j["data.strength"] for j in jobs} == {"0", "0.5", "1", "2"}
    assert {j["data.train_subjects_per_class"] for j in jobs} == {"5", "10", "null"}
    assert "dlib_resnet_dlib_faces_gallery" in {j["method"] for j in jobs} and len(jobs) == 4 * 3 * 8 * 10


def test_training_sizes_read_small_to_large_with_all_last_whichever_method_comes_first():
    points = sweep_points()
    points = pd.concat([points[points["train_subjects_per_class"] == "all"].assign(method="A0"), points])
    assert list(mde_display(mde_table(points)).columns) == ["method", "5", "all (≈16)"]


def with_ceiling() -> pd.DataFrame:
    """The synthetic sweep plus the ideal observer's rows for method A's cells: 0.2 at 0 SD, 0.95 at 2 SD."""
    points = sweep_points()
    ideal = points[points["method"] == "A"].assign(method=IDEAL)
    ideal["accuracy"] = np.where(ideal["strength"] == 2.0, 0.95, np.where(ideal["strength"] == 0.0, 0.2, 0.8))
    return pd.concat([points, ideal], ignore_index=True)


def test_each_method_s_share_of_the_ideal_observer_s_ceiling_is_read_in_the_same_cell():
    shared = ceiling_share(with_ceiling()).set_index(["method", "train_subjects_per_class", "strength"])
    assert np.isclose(shared.loc[("A", "all", 2.0), "share_of_ceiling"], 0.90 / 0.95)
    assert np.isclose(shared.loc[("A", "all", 2.0), "share_above_chance"], (0.90 - 0.2) / (0.95 - 0.2))
    assert np.isnan(shared.loc[("A", "all", 0.0), "share_above_chance"])  # a ceiling at chance: no share
    assert shared.loc[("C", "5", 2.0), "ceiling"] == 0.95 and shared.loc[(IDEAL, "5", 2.0), "share_of_ceiling"] == 1


def test_the_ceiling_table_shows_the_ideal_observer_beside_every_method_and_the_figure_draws_it():
    table = ceiling_display(with_ceiling()).set_index("method")
    assert table.loc["A", "all (≈16), 2 SD"] == "0.900 [0.830, 0.950] (95%)"
    assert table.loc[IDEAL, "all (≈16), 2 SD"].startswith("0.950")
    figure = power_figure(with_ceiling(), "sim / condition")
    labels = figure.axes[0].get_legend_handles_labels()[1]
    assert IDEAL in labels


class SplitRun:
    """What the ideal observer reads of a run: its split, classes and split settings."""

    def __init__(self, split: pd.DataFrame, seed: int, fold: int):
        self.split, self.classes = split, ["healthy", "sick"]
        self.settings = {"data.split_seed": seed, "data.fold": fold, "data.train_subjects_per_class": None}

    def setting(self, dotted: str, default=None):
        return self.settings.get(dotted, default)


def test_the_ideal_observer_fits_once_per_distinct_split_and_names_the_command_when_the_truth_lacks_measures(
    tmp_path,
):
    import pytest

    from facediag.evaluation.power import TruthError, ideal_point

    tree = tmp_path / "tree"
    tree.mkdir()
    pd.DataFrame({"condition": ["sick"]}).to_csv(tree / "conditions.csv", index=False)
    people = [f"{i:03d}" for i in range(20)]
    labels = ["healthy" if i % 2 else "sick" for i in range(20)]
    paths = [f"{label}/{person}.jpg" for label, person in zip(labels, people, strict=True)]
    measure = [2.0 + 0.1 * i if label == "sick" else -2.0 - 0.1 * i for i, label in enumerate(labels)]
    pd.DataFrame({"path": paths, "subject": people, "class": labels, "measure_sick": measure}).to_csv(
        tree / "truth.csv", index=False)  # fmt: skip
    runs = []
    for fold in range(2):
        roles = ["test" if i % 4 // 2 == fold else "train" for i in range(20)]
        split = pd.DataFrame({"path": [str(tree / p) for p in paths], "subject": [int(p) for p in people],
                              "label": labels, "role": roles})  # fmt: skip
        runs.append(SplitRun(split, 0, fold))
    fitted: dict = {}
    point = ideal_point([runs[0], runs[1], runs[0]], fitted)  # two methods' runs of one split: one fit
    assert point == {"n_runs": 2, "n": 20, "accuracy": 1.0, **{k: point[k] for k in ("accuracy_lo", "accuracy_hi")}}
    assert len(fitted) == 2 and point["accuracy_lo"] > 0.8
    pd.DataFrame({"path": paths, "subject": people, "class": labels}).to_csv(tree / "truth.csv", index=False)
    with pytest.raises(TruthError, match="python -m facediag.simulate.measures"):
        ideal_point(runs, {})
