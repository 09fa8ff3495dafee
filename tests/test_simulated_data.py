"""data=simulated: a tree is written once per settings into the cache and read by every later run."""

from __future__ import annotations

import pandas as pd
import pytest

from facediag.simulate import tree as tree_module
from facediag.simulate.dataset import SimulatedDataset, cached_tree, tree_name
from facediag.simulate.tree import Settings
from tests.conftest import write_image


def test_tree_names_keep_strength_and_seed_readable_and_hash_the_other_settings():
    assert tree_name("london", Settings(strength=2.0, seed=0)).startswith("london_s2_seed0_")
    assert tree_name("london", Settings(strength=0.5)).startswith("london_s0.5_seed0_")
    assert tree_name("london", Settings(jitter=0.3)) != tree_name("london", Settings(jitter=0.0))
    assert tree_name("london", Settings()) != tree_name("/data/controls", Settings())


def test_a_cached_tree_is_read_not_written_again(tmp_path, monkeypatch):
    settings = Settings(strength=1.0, seed=3)
    tree = tmp_path / tree_name("london", settings)
    rows = []
    for label in ("healthy", "midface"):
        for i in range(2):
            write_image(tree / label / f"{label}{i}.jpg", seed=i)
            rows.append({"path": f"{label}/{label}{i}.jpg", "subject": f"{label}{i}"})
    pd.DataFrame(rows).to_csv(tree / "subjects.csv", index=False)
    (tree / "simulate.json").write_text("{}")

    def must_not_build(*args, **kwargs):
        raise AssertionError("the cached tree was written again")

    monkeypatch.setattr(tree_module, "build_tree", must_not_build)
    assert cached_tree(tmp_path, "london", settings, tmp_path / "no-london") == tree
    data = SimulatedDataset(tmp_path, strength=1, seed=3, london_root=tmp_path / "no-london")
    assert data.classes == ["healthy", "midface"] and data.name == "simulated"
    assert sorted(r.subject for r in data.records()) == ["healthy0", "healthy1", "midface0", "midface1"]


def test_an_uncached_tree_is_written_from_the_source_faces(tmp_path):
    with pytest.raises(Exception, match="no-london|London|not found"):  # no source: the build is attempted
        cached_tree(tmp_path, "london", Settings(strength=1.0, seed=4), tmp_path / "no-london")
