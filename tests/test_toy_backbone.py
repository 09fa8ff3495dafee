"""A backbone defined outside the package (tests/toy_backbone.py + tests/toy_backbone.yaml, registered through the
public API) is registered, composes, trains DTL2 and predicts its own test photos, with no other file changed."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facediag.models import ARCHITECTURES, BACKBONES, available_pairs, backbone_config, create
from tests.conftest import REPO, TINY, compose_train, own_scores

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def toy_registered():
    """Import tests/toy_backbone.py (which registers it) for this module's tests only: other test files see
    the package's backbones alone."""
    before = dict(BACKBONES), dict(ARCHITECTURES)
    sys.modules.pop("tests.toy_backbone", None)
    importlib.import_module("tests.toy_backbone")
    yield
    for registry, saved in zip((BACKBONES, ARCHITECTURES), before, strict=True):
        registry.clear()
        registry.update(saved)


@pytest.fixture(scope="module")
def toy_dtl2_run(tmp_path_factory, shared_cache, london_dir) -> Path:
    from facediag.training.train import train

    run_dir = tmp_path_factory.mktemp("toy_dtl2_run")
    train(compose_train(run_dir, *TINY, "method=toy_none_dtl2", "strategy.C_grid=[1.0]", cache_dir=shared_cache))
    return run_dir


def test_the_toy_backbone_is_registered_with_its_inline_weights():
    assert ("toy", "none") in available_pairs()
    assert backbone_config("toy") == {"name": "toy", "feature_layer": "pool",
                                      "align": {"template": "dlib", "padding": 0.25, "size": 150}}
    model = create("toy", "none", num_classes=2)
    assert model.feature_dim == 16 and model.head.out_features == 2 and model.num_stages == 2


def test_the_toy_backbone_trains_dtl2_and_predicts_its_own_test_scores(toy_dtl2_run, tmp_path):
    from facediag.apply.predict import main

    run_config = (toy_dtl2_run / "run_config.yaml").read_text()
    assert "name: toy" in run_config and "feature_layer: pool" in run_config
    expected = own_scores(toy_dtl2_run)
    assert len(expected) > 0
    out = tmp_path / "scores.csv"
    assert main([*expected.index, f"run={toy_dtl2_run}", f"out={out}"]) == 0
    scores = pd.read_csv(out).set_index("path").loc[expected.index]
    columns = [c for c in expected.columns if c.startswith("score_")]
    np.testing.assert_allclose(scores[columns].to_numpy(float), expected[columns].to_numpy(float), atol=1e-5)


def test_the_package_and_its_configs_know_nothing_of_the_toy():
    files = [*(REPO / "facediag").rglob("*.py"), *(REPO / "facediag").rglob("*.yaml"), *(REPO / "conf").rglob("*.yaml")]
    assert len(files) > 50
    assert [path for path in files if re.search(r"\btoy\b", path.read_text())] == []


def test_an_entry_point_registers_the_toy_backbone_in_a_fresh_interpreter(tmp_path):
    dist = tmp_path / "toy_backbone_plugin-1.0.dist-info"  # what `pip install` of a plugin package leaves
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-backbone-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[facediag.backbones]\ntoy = tests.toy_backbone\n")
    code = "import facediag.models as m; print(sorted(m.BACKBONES), m.load_spec('toy', 'none').arch)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "'toy'" in done.stdout and done.stdout.split()[-1] == "toy"
