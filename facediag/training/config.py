"""What ``train.yaml`` needs registered before Hydra composes it: the resolvers (``facediag.core.config``), the
``backbone`` / ``weights`` / ``method`` options generated from the backbone registry (``facediag.models``) and
DTL1's ``strategy_settings`` (``facediag.strategies``), each stored by the wing that owns it."""

from __future__ import annotations

from facediag.core.config import register_resolvers
from facediag.models.config_groups import store_config_groups
from facediag.strategies.sgd import store_strategy_settings


def register_configs() -> None:
    """Register everything the ``train`` config composes (``train.py``, ``python -m facediag.preprocess``, sweeps,
    tests composing it as a library); safe to call repeatedly."""
    register_resolvers()
    store_config_groups()
    store_strategy_settings()
