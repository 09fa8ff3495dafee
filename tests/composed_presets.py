"""The `train` config of every preset as Hydra composes it, for comparing a checkout with an earlier one.

``python tests/composed_presets.py OUT.json`` (with the checkout to record on ``PYTHONPATH``) writes, for the default
config and every ``method``, ``experiment``, ``backbone`` and ``weights`` option of that checkout, the composed
config (interpolations unresolved) with its sweep (``hydra.mode``, ``hydra.sweeper``): the default in full, every
other one as the top-level keys where it differs from the default. tests/test_config_groups.py composes the same
names with the current code and compares.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DEFAULT = "default"


def _config_module() -> Any:
    import importlib

    import facediag

    wings = (Path(facediag.__file__).parent / "core").is_dir()  # else a checkout from before the wings
    return importlib.import_module("facediag.core.config" if wings else "facediag.config")


def preset_names() -> list[str]:
    """``group=option`` for every YAML option of the preset groups of this checkout's conf/ folder."""
    config_dir = _config_module().CONFIG_DIR
    return [f"{group}={path.stem}" for group in ("method", "experiment", "backbone", "weights")
            for path in sorted((config_dir / group).glob("*.yaml"))]


def compose_all(names: list[str]) -> dict[str, dict[str, Any]]:
    """The default config in full and each ``group=option`` in ``names`` as its differences from it."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    config = _config_module()
    try:
        from facediag.training.config import register_configs  # each wing stores the groups it owns
    except ImportError:  # an earlier checkout: its config module registered them all
        register_configs = config.register_resolvers
    register_configs()
    plain: dict[str, dict[str, Any]] = {}
    with initialize_config_dir(config_dir=str(config.CONFIG_DIR), version_base="1.3"):
        for name in [DEFAULT, *names]:
            cfg = compose(config_name="train", overrides=[] if name == DEFAULT else [name], return_hydra_config=True)
            values = OmegaConf.to_container(cfg, resolve=False)
            values.pop("hydra")
            values["hydra.mode"] = str(cfg.hydra.mode)
            values["hydra.sweeper"] = OmegaConf.to_container(cfg.hydra.sweeper, resolve=False)
            plain[name] = values
    default = plain[DEFAULT]
    return {name: values if name == DEFAULT else {k: v for k, v in values.items() if default.get(k) != v}
            for name, values in plain.items()}


if __name__ == "__main__":
    composed = compose_all(preset_names())
    Path(sys.argv[1]).write_text(json.dumps(composed, indent=1, sort_keys=True) + "\n")
    print(f"{len(composed)} configs from {_config_module().__file__}")
