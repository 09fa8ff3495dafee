"""The acceptance test of identity-aware subjects: random labels on a DSF-shaped folder score like chance.

A DSF-shaped folder of London people, both photos of a person in one class, classes assigned AT
RANDOM, no subjects CSV: without identity grouping the second photo of a test person sat in training
(0.44 against chance 0.2). With it, split.csv keeps every person on one side and the accuracy's 95%
interval contains chance, under the paper split and k-fold.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import run_python
from tests.owndata import random_class_tree

pytestmark = pytest.mark.slow
DSF_FOLDERS = ["beta-thalassemia", "hyperthyroidism", "down syndrome", "leprosy", "healthy"]
PER_CLASS = 8  # people per class (16 photos; 40 people in all)
FAST = ["logger=none", "callbacks=none", "trainer.enable_progress_bar=false", "preprocess.progress=false",
        "controls=[]"]  # no face-blind or capture-only control: tests/test_controls.py trains them


@pytest.fixture(scope="module")
def dsf_tree(london_dir, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("dsf") / "DSF"
    return root, random_class_tree(london_dir, root, DSF_FOLDERS, PER_CLASS, seed=7)


def train_dsf(root: Path, run_dir: Path, *overrides: str):
    result = run_python(
        "train.py", "data=dsf", f"data.root={root}", "data.task=multiclass", f"hydra.run.dir={run_dir}", *FAST,
        *overrides,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def people_sides(split: pd.DataFrame, owner: dict[str, str]) -> pd.Series:
    """Number of roles per London person in a split ('val' counts as a side of its own)."""
    placed = split[split["role"] != "excluded"]  # rows left out of the split (with their reason) are on no side
    return placed.assign(person=placed["path"].map(owner)).groupby("person")["role"].nunique()


def test_without_identity_grouping_a_person_sits_on_two_sides(dsf_tree, tmp_path):
    root, owner = dsf_tree
    train_dsf(root, tmp_path, "data.split=kfold", "data.identity_grouping=off", "prepare_only=true")
    split = pd.read_csv(tmp_path / "split.csv")
    assert (people_sides(split, owner) > 1).sum() > 5  # the leak this feature closes


@pytest.mark.parametrize(
    "split_args",
    [["data.split=paper", "data.n_train=8", "data.n_test=6"], ["data.split=kfold", "data.n_folds=5"]],
    ids=["paper", "kfold"],
)
def test_random_labels_score_like_chance_and_people_stay_on_one_side(dsf_tree, tmp_path, split_args):
    root, owner = dsf_tree
    result = train_dsf(root, tmp_path, *split_args)
    split = pd.read_csv(tmp_path / "split.csv")
    assert len(split) > 0 and (people_sides(split, owner) == 1).all()
    assert set(split["subject_source"]) == {"identity"}
    assert "identities with several images" in result.stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    low, high = metrics["accuracy_ci"]
    assert low <= 0.2 <= high, metrics["accuracy"]
    if "data.split=paper" in split_args:
        counts = split.groupby(["label", "role"]).size().unstack(fill_value=0)
        assert (counts["test"] <= 6).all() and ((counts["train"] + counts["val"]) <= 8).all()
