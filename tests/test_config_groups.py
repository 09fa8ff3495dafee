"""The Hydra groups generated from the backbone registry compose what the copied YAML files composed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from facediag.models import BACKBONES, available_pairs, datasets
from facediag.models.config_groups import ONE_BACKBONE_STRATEGIES, method_name
from tests.composed_presets import DEFAULT, compose_all
from tests.conftest import DATA_DIR, compose_train, run_python

#: every preset and experiment of the checkout before the registry (commit 058cb98), composed there
BEFORE = json.loads((Path(__file__).parent / "fixtures" / "composed_presets_058cb98.json").read_text())
RENAMED = {"dlib_resnet_dlib_faces_dtl1_cpu": "dlib_resnet_dlib_faces_dtl1_small_budget",
           "efficientnet_lite0_imagenet_dtl1_cpu": "efficientnet_lite0_imagenet_dtl1_small_budget"}


@pytest.fixture(scope="module")
def composed_now() -> dict[str, dict]:
    """The same names composed by this checkout (old preset names included), plus the renamed presets."""
    return compose_all([name for name in BEFORE if name != DEFAULT] + [f"method={new}" for new in RENAMED.values()])


def with_new_names(values: dict) -> dict:
    """A composed config of the earlier checkout with the renamed presets' new names in its sweep."""
    text = json.dumps(values)
    for old, new in RENAMED.items():
        text = text.replace(old, new)
    return json.loads(text)


#: keys added since 058cb98, in (dotted node, key) form (node None: top level): capture harmonisation
#: (preprocess.harmonise, data.harmonise), folders left out (data.exclude) and the controls trained beside every
#: method (controls, controls_dtl1), the permutation test (permutations)
ADDED = (("data", "harmonise"), ("preprocess", "harmonise"), ("data", "exclude"), ("data.source", "exclude"),
         (None, "controls"), (None, "controls_dtl1"), (None, "permutations"))


#: values written differently since 058cb98 that resolve to the same folder (test below): (node, key) -> (then, now)
REWRITTEN = {("paths", "cache_dir"): ("${oc.env:FACEDIAG_CACHE_DIR,${oc.env:XDG_CACHE_HOME,${oc.env:HOME}/.cache}"
                                      "/facediag}", "${cache_root:}")}


def without_added(values: dict) -> dict:
    """A composed config without the keys added since 058cb98, its rewritten values as they were written then."""
    values = json.loads(json.dumps(values))
    for (node, key), (then, now) in REWRITTEN.items():
        if values.get(node, {}).get(key) == now:
            values[node][key] = then
    for node, key in ADDED:
        holder = values
        for part in (node.split(".") if node else []):
            holder = holder.get(part) if isinstance(holder, dict) else None
        if isinstance(holder, dict):
            holder.pop(key, None)
    return values


def test_every_earlier_preset_name_still_composes_the_same_training_config(composed_now):
    assert len(BEFORE) == 50  # default, 27 methods, 10 experiments, 6 backbones, 6 weights
    changed = [name for name in BEFORE if with_new_names(BEFORE[name]) != without_added(composed_now[name])]
    assert changed == []


@pytest.mark.parametrize("environment", [{"FACEDIAG_CACHE_DIR": "/srv/cache"}, {"XDG_CACHE_HOME": "/xdg"}, {}])
def test_a_rewritten_value_resolves_as_it_did(environment, monkeypatch):
    from facediag.core.config import register_resolvers

    register_resolvers()
    for name in ("FACEDIAG_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    for then, now in REWRITTEN.values():
        values = OmegaConf.create({"then": then, "now": now})
        assert values.then == values.now


def test_experiments_sweep_the_renamed_small_budget_presets(composed_now):
    sweeps = {name: values.get("hydra.sweeper", {}).get("params", {}) for name, values in composed_now.items()
              if name.startswith("experiment=")}
    listed = json.dumps(sweeps) + json.dumps(composed_now["experiment=optuna_dtl1_lr"])
    assert "_cpu" not in listed and all(new in listed for new in RENAMED.values())


@pytest.mark.parametrize(("old", "new"), sorted(RENAMED.items()))
def test_a_small_budget_preset_and_its_former_cpu_name_compose_alike(old, new, composed_now):
    assert composed_now[f"method={old}"] == composed_now[f"method={new}"]
    assert without_added(composed_now[f"method={new}"]) == BEFORE[f"method={old}"]


def test_every_registered_backbone_dataset_and_pair_is_an_option(tmp_path):
    from hydra.core.config_store import ConfigStore

    from facediag.training.config import register_configs

    register_configs()
    store = ConfigStore.instance()
    assert set(store.list("backbone")) >= {f"{name}.yaml" for name in BACKBONES}
    assert set(store.list("weights")) >= {f"{dataset}.yaml" for dataset in datasets()}
    assert set(store.list("method")) >= {f"{method_name(b, d, s)}.yaml" for b, d in available_pairs()
                                         for s in ONE_BACKBONE_STRATEGIES}
    cfg = compose_train(tmp_path, "method=senet50_none_dtl1")  # a pair no YAML file ever named
    assert (cfg.backbone.name, cfg.weights.name, cfg.strategy.name) == ("senet50", "none", "dtl1")


def test_a_method_name_is_the_same_as_choosing_backbone_weights_and_strategy(tmp_path):
    by_name = compose_train(tmp_path, "method=efficientnet_lite0_imagenet_dtl2", "backbone.align.padding=0.3")
    by_groups = compose_train(tmp_path, "backbone=efficientnet_lite0", "weights=imagenet", "strategy=dtl2",
                              "backbone.align.padding=0.3")
    assert OmegaConf.to_container(by_name) == OmegaConf.to_container(by_groups)
    assert by_name.backbone.align.padding == 0.3 and by_name.backbone.align.size is None  # null: the packaged value


def test_an_unknown_backbone_is_refused_listing_the_registered_ones(tmp_path):
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException, match=r"(?s)backbone/nosuchnet.*Available options.*dlib_resnet"):
        compose_train(tmp_path, "backbone=nosuchnet")


def test_cli_multirun_sweeps_generated_backbones_with_a_crop_override(tmp_path):
    done = run_python("train.py", "-m", "backbone=dlib_resnet,efficientnet_lite0", "weights=none",
                      "backbone.align.padding=0.3", "prepare_only=true", "logger=none", f"hydra.sweep.dir={tmp_path}",
                      f"paths.data_dir={DATA_DIR}", env={"HYDRA_FULL_ERROR": "1"})  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    backbones = [OmegaConf.load(tmp_path / job / "run_config.yaml").backbone for job in ("0", "1")]
    assert [(b.name, b.feature_layer, b.align.template, b.align.padding, b.align.size) for b in backbones] == [
        ("dlib_resnet", "descriptor", "dlib", 0.3, 150), ("efficientnet_lite0", "pool", "vggface2", 0.3, 224)]
