"""The strategy registry (timm style): each strategy class registers its name and its Predictor class.

A strategy is a small object built from ``conf/strategy/<name>.yaml`` (Hydra ``_target_``) with
``fit(job) -> Predictor``; the Predictor (:mod:`facediag.strategies.predictor`) is what a run dir keeps. Everything
that applies, explains or reports a run finds that Predictor here, from the run's config, never by branching on
strategy names::

    @register_strategy("my_strategy", predictor=MyPredictor)
    class MyStrategy:
        uses_backbone = False            # runs no pretrained CNN (no backbone / weights / MACs)
        def fit(self, job) -> MyPredictor: ...

A strategy in any importable module works the same way: ``strategy._target_=my_package.MyStrategy``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

S = TypeVar("S", bound=type)

_STRATEGIES: dict[str, type] = {}
#: the modules of the package's own strategies, imported when a config names a strategy without ``_target_``
BUILTIN_MODULES = ("facediag.strategies.dtl1", "facediag.strategies.dtl2", "facediag.strategies.fused",
                   "facediag.strategies.dsift")


def register_strategy(name: str, predictor: type) -> Callable[[S], S]:
    """Class decorator: register a strategy class under ``name`` with the Predictor class its ``fit`` returns
    (and that loads its run dirs). Sets ``cls.registered_name`` and ``cls.predictor``."""

    def register(cls: S) -> S:
        known = _STRATEGIES.get(name)
        if known is not None and f"{known.__module__}.{known.__qualname__}" != f"{cls.__module__}.{cls.__qualname__}":
            raise ValueError(f"strategy name {name!r} is taken by {known.__module__}.{known.__qualname__}")
        if not callable(getattr(cls, "fit", None)):
            raise TypeError(f"strategy {cls.__qualname__} has no fit(job) method")
        cls.registered_name = name
        cls.predictor = predictor
        predictor.strategy_name = name
        _STRATEGIES[name] = cls
        return cls

    return register


def available() -> list[str]:
    """The registered strategy names (the package's own imported first)."""
    _import_builtins()
    return sorted(_STRATEGIES)


def _import_builtins() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def _target_class(target: str) -> type:
    module, _, name = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"strategy _target_ {target!r} cannot be imported: {err}") from err


def strategy_class(strategy: Mapping[str, Any] | Any) -> type:
    """The registered class of a ``strategy`` config node: its ``_target_`` (importing it registers it), else its
    ``name`` among the registered strategies."""
    target = strategy.get("_target_") if strategy else None
    if target:
        cls = _target_class(str(target))
        if getattr(cls, "predictor", None) is None or _STRATEGIES.get(getattr(cls, "registered_name", "")) is not cls:
            raise ValueError(f"strategy {target} is not registered: decorate it with "
                             "facediag.strategies.registry.register_strategy(name, predictor=...)")
        return cls
    name = str(strategy.get("name")) if strategy else None
    if name not in _STRATEGIES:
        _import_builtins()
    if name not in _STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; registered: {sorted(_STRATEGIES)}")
    return _STRATEGIES[name]


def trait(strategy: Mapping[str, Any] | Any, attribute: str, default: Any) -> Any:
    """A class attribute of a ``strategy`` config's registered class (``default`` when the class has none or
    cannot be found: a run of a strategy no longer installed still evaluates)."""
    try:
        return getattr(strategy_class(strategy or {}), attribute, default)
    except ValueError:
        return default


def uses_backbone(strategy: Mapping[str, Any] | Any) -> bool:
    """Whether a ``strategy`` config runs a pretrained CNN (the run's ``backbone`` / ``weights``): its
    ``uses_backbone`` key when it has one, else its class's ``uses_backbone`` attribute (true when it has none,
    and for a config whose class cannot be found)."""
    if strategy and "uses_backbone" in strategy:
        return bool(strategy["uses_backbone"])
    return bool(trait(strategy, "uses_backbone", True))
