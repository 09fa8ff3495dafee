"""DTL1's optimiser settings: the one definition (Hydra composes ``conf/strategy/dtl1.yaml`` on top of it)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class SGDSettings:
    """How DTL1 fine-tunes (the paper's SGD by default); the ``strategy.*`` keys of ``strategy=dtl1``
    (registered as the structured config ``strategy_settings/dtl1`` by :func:`store_strategy_settings`)."""

    lr: float = 5e-5
    weight_decay: float = 5e-4
    momentum: float = 0.9
    head_lr_mult: float = 1.0  # the new head's lr = lr x this
    freeze_stages: int = 0  # freeze the first k stages of the backbone
    head_norm: bool = False  # true: BatchNorm1d (no affine) before the new head, for features far from zero mean


def store_strategy_settings() -> None:
    """Store :class:`SGDSettings`' defaults as ``strategy_settings/dtl1`` in Hydra's ConfigStore (the node
    ``conf/strategy/dtl1.yaml`` extends); repeatable."""
    from hydra.core.config_store import ConfigStore

    # a plain dict, not the dataclass: conf/strategy/dtl1.yaml adds keys of its own (name, max_epochs, ...)
    ConfigStore.instance().store(group="strategy_settings", name="dtl1", node=dataclasses.asdict(SGDSettings()))
