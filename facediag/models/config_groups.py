"""The Hydra groups ``backbone`` and ``weights`` and the plain ``method`` presets, generated from the registry.

``store_config_groups()`` (called by ``facediag.training.config.register_configs``) puts one option per registered
backbone, per pretraining dataset and per (backbone, weights, strategy) combination into Hydra's ConfigStore, so a
new backbone needs no YAML under ``conf/``:

- ``backbone=<name>`` selects the backbone's packaged definition (default DTL2 feature layer, face-crop geometry);
  a value set on the command line (``backbone.feature_layer=pooled``, ``backbone.align.padding=0.3``) overrides
  the packaged one, null keeps it; train.py writes the merged definition into the run's ``run_config.yaml``.
- ``weights=<dataset>`` selects the pretraining dataset; the file, URL, sha256, input normalisation and key map
  are in the backbone's weight spec, these are the user's options (an explicit ``path``, ``download``, the
  ``cache_dir``, a ``sha256`` pin for files without a published checksum).
- ``method=<backbone>_<weights>_<strategy>`` (strategy ``dtl1`` or ``dtl2``) is one row of a results table, the
  same as ``backbone=<backbone> weights=<weights> strategy=<strategy>``; presets that carry settings of their own
  are YAML files in ``conf/method``.
"""

from __future__ import annotations

from typing import Any

from facediag.models.registry import BACKBONES, available_pairs, datasets, get_backbone

#: the strategies that train on one backbone (fused DTL2 lists its sources; DSIFT has none)
ONE_BACKBONE_STRATEGIES = ("dtl1", "dtl2")


def backbone_option(name: str) -> dict[str, Any]:
    """The ``backbone`` option ``name``: selects the registered backbone, every key null (the packaged value)."""
    get_backbone(name)
    return {"name": name, "feature_layer": None, "align": {"template": None, "padding": None, "size": None}}


def weights_option(dataset: str) -> dict[str, Any]:
    """The ``weights`` option ``dataset``: the user's options for a weight file (none set)."""
    if dataset not in datasets():
        raise ValueError(f"unknown weights {dataset!r}; choose one of {datasets()}")
    return _weights_option(dataset)


def _weights_option(dataset: str) -> dict[str, Any]:
    return {"name": dataset, "path": None, "download": False, "cache_dir": "${paths.cache_dir}/weights",
            "sha256": None}


def method_name(backbone: str, dataset: str, strategy: str) -> str:
    return f"{backbone}_{dataset}_{strategy}"


def method_option(backbone: str, dataset: str, strategy: str) -> dict[str, Any]:
    """A ``method`` option (package ``_global_``) that selects a backbone, its weights and a strategy."""
    return {"defaults": [{"override /backbone": backbone}, {"override /weights": dataset},
                         {"override /strategy": strategy}]}


def method_options() -> dict[str, dict[str, Any]]:
    """Every generated ``method`` option by name: each (backbone, weights) pair with a spec x each strategy."""
    return {method_name(b, d, s): method_option(b, d, s)
            for b, d in available_pairs() for s in ONE_BACKBONE_STRATEGIES}


def store_config_groups() -> None:
    """Store the ``backbone``, ``weights`` and generated ``method`` options in Hydra's ConfigStore (repeatable:
    a backbone registered later is added by the next call)."""
    from hydra.core.config_store import ConfigStore

    options = [("backbone", name, backbone_option(name), None) for name in BACKBONES]
    options += [("weights", dataset, _weights_option(dataset), None) for dataset in datasets()]
    options += [("method", name, node, "_global_") for name, node in method_options().items()]
    store = ConfigStore.instance()
    stored = {group: _listed(store, group) for group in ("backbone", "weights", "method")}
    for group, name, node, package in options:
        if f"{name}.yaml" not in stored[group]:  # storing converts to OmegaConf: slow when repeated per compose
            store.store(group=group, name=name, node=node, package=package)


def _listed(store: Any, group: str) -> set[str]:
    try:
        return set(store.list(group))
    except OSError:  # no such group yet
        return set()
