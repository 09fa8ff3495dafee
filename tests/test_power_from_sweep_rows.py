"""A sweep over ``data.strength`` becomes power curves, the MDE table and the ideal observer's ceiling
(facediag.evaluation.power) from the sweep's own rows: small simulated trees written by the test (truth.csv with
known measures), two folds each, the rows' pooled metrics given."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facediag.evaluation.power import IDEAL, add_power_curves, ideal_point, power_points
from facediag.evaluation.report import Report
from facediag.evaluation.sweep import Entry, Row

PEOPLE = 20
METHOD = {"dataset": "simulated", "task": "condition", "backbone": "dlib_resnet", "weights": "dlib_faces",
          "strategy": "dtl2"}  # fmt: skip


class TreeRun:
    """What the power curves read of a finished run: its split into a simulated tree, classes and settings."""

    def __init__(self, split: pd.DataFrame, fold: int, size: int | None = None):
        self.split, self.classes = split, ["healthy", "sick"]
        self.settings = {"data.split_seed": 0, "data.fold": fold, "data.train_subjects_per_class": size}

    def setting(self, dotted: str, default=None):
        return self.settings.get(dotted, default)


def write_tree(folder: Path, separation: float | None, seed: int = 0) -> Path:
    """A tree's truth.csv and conditions.csv: healthy and sick people, ``measure_sick`` ``separation`` apart
    (None: a tree written before the measures, no such column)."""
    folder.mkdir(parents=True)
    pd.DataFrame({"condition": ["sick"]}).to_csv(folder / "conditions.csv", index=False)
    labels = ["healthy" if i % 2 else "sick" for i in range(PEOPLE)]
    truth = pd.DataFrame({"path": [f"{label}/{i:03d}.jpg" for i, label in enumerate(labels)],
                          "subject": [f"{i:03d}" for i in range(PEOPLE)], "class": labels})  # fmt: skip
    if separation is not None:
        noise = np.random.default_rng(seed).normal(0, 1, PEOPLE)
        truth["measure_sick"] = noise + np.where(truth["class"] == "sick", separation, 0.0)
    truth.to_csv(folder / "truth.csv", index=False)
    return folder


def tree_runs(tree: Path) -> list[TreeRun]:
    """The two folds' runs on ``tree``: half the people tested in each."""
    truth = pd.read_csv(tree / "truth.csv", dtype={"subject": str})
    runs = []
    for fold in range(2):
        roles = ["test" if i % 4 // 2 == fold else "train" for i in range(PEOPLE)]
        runs.append(TreeRun(pd.DataFrame({"path": [str(tree / p) for p in truth["path"]], "subject": truth["subject"],
                                          "label": truth["class"], "role": roles}), fold))  # fmt: skip
    return runs


def row(tree: Path, strength: float, accuracy: float, interval: tuple[float, float], dataset: str = "simulated",
        variant: str = "svm") -> Row:  # fmt: skip
    """The sweep table's pooled row of one method at one strength (all training people, C fixed)."""
    config = {"data": {"strength": strength, "train_subjects_per_class": None}}
    entries = [Entry(tree / f"run{run.setting('data.fold')}", config, run) for run in tree_runs(tree)]
    return Row(entries, variant, {**METHOD, "dataset": dataset}, evaluation="test",
               setting=f"data.strength={strength:g}, strategy.C=1",
               metrics={"n": PEOPLE, "accuracy": accuracy, "accuracy_ci": interval})  # fmt: skip


@pytest.fixture
def sweep_rows(tmp_path: Path) -> list[Row]:
    """A null tree (strength 0), a 3 SD tree, a failed row and a row of a sweep without strengths."""
    null, strong = write_tree(tmp_path / "s0", 0.0), write_tree(tmp_path / "s3", 6.0)
    failed = row(strong, 3.0, 0.0, (0.0, 0.0))
    failed.status = "failed"
    no_strength = row(strong, 3.0, 0.5, (0.3, 0.7))
    for entry in no_strength.entries:
        entry.config = {"data": {}}
    return [row(null, 0.0, 0.45, (0.26, 0.66)), row(strong, 3.0, 0.85, (0.64, 0.95)), failed, no_strength]


def test_power_points_hold_each_method_row_with_its_ceiling_and_one_ideal_row_per_strength(sweep_rows):
    points = power_points(sweep_rows).set_index(["method", "strength"])
    method = "dlib_resnet/dlib_faces/dtl2 svm [strategy.C=1]"  # the strength is the curve's axis, not its name
    assert sorted(points.index) == sorted([(method, 0.0), (method, 3.0), (IDEAL, 0.0), (IDEAL, 3.0)])
    assert points.loc[(method, 3.0), "accuracy"] == 0.85 and points.loc[(method, 3.0), "chance"] == 0.5
    assert points.loc[(method, 3.0), "people_per_class"] == 5.0  # 10 training people per fold, two classes
    assert points.loc[(IDEAL, 3.0), "accuracy"] == 1.0 and points.loc[(IDEAL, 3.0), "reads"] == "truth"
    assert points.loc[(method, 3.0), "ceiling"] == 1.0 and points.loc[(method, 3.0), "reads"] == "photo"
    assert points.loc[(IDEAL, 3.0), "n_runs"] == 2 and points.loc[(IDEAL, 3.0), "n"] == PEOPLE
    assert points.loc[(IDEAL, 0.0), "accuracy"] < 1.0


def test_the_power_section_writes_its_tables_and_one_figure_per_dataset_and_task(sweep_rows, tmp_path, capsys):
    old = write_tree(tmp_path / "old", None)  # a tree written before the measures: no ceiling, a note
    rows = [*sweep_rows, row(old, 0.0, 0.5, (0.3, 0.7), dataset="older"), row(old, 3.0, 0.9, (0.7, 0.97),
                                                                              dataset="older")]  # fmt: skip
    report = Report("sweep")
    out = tmp_path / "report"
    out.mkdir()  # the sweep's report folder
    files = add_power_curves(rows, report, out)
    assert set(files) == {"power", "mde", "power_simulated_condition", "power_older_condition"}
    assert files["power_older_condition"] == out / "figures" / "power_older_condition.png"
    assert all(path.is_file() and path.stat().st_size > 0 for path in files.values())
    assert "ideal observer left out: " in capsys.readouterr().out
    power = pd.read_csv(files["power"])
    older = power[power["dataset"] == "older"]
    assert IDEAL not in set(older["method"]) and older["ceiling"].isna().all()
    strong = power[(power["dataset"] == "simulated") & (power["strength"] == 3.0) & (power["method"] != IDEAL)]
    assert np.isclose(strong["share_of_ceiling"].iloc[0], 0.85)
    mde = pd.read_csv(files["mde"]).set_index(["dataset", "method"])
    assert mde.loc[("simulated", IDEAL), "mde"] == 3.0
    assert mde.loc[("older", "dlib_resnet/dlib_faces/dtl2 svm [strategy.C=1]"), "mde"] == 3.0
    text = report.to_markdown(out)
    assert "## Power curves and minimum detectable effect" in text and "### older / condition" in text
    assert "figures/power_simulated_condition.png" in text


def test_the_ideal_observer_has_no_point_without_a_run_that_has_a_split():
    empty = TreeRun(pd.DataFrame(), 0)
    assert ideal_point([None, empty]) is None
