"""Sweep support: check every weight file before a multirun starts; skip jobs already complete."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from facediag.core.config import CONFIG_DIR
from facediag.strategies.registry import uses_backbone
from facediag.training.config import register_configs

log = logging.getLogger(__name__)


class MissingWeightsError(FileNotFoundError):
    """Weight files a sweep needs are not on this machine."""


def _choices(config: DictConfig) -> dict[str, list[str]]:
    """Every value each of `method`, `backbone`, `weights`, `strategy` takes in this (multi)run.

    The sweep is read with Hydra's override parser, the public API (``hydra.core``) that Hydra's own
    BasicSweeper and the Optuna sweeper expand sweeps with; the configs behind the values are composed by
    Hydra (``compose_train``), never read from the YAML files.
    """
    choices = {key: [str(config.hydra.runtime.choices.get(key))] for key in ("backbone", "weights", "strategy")}
    method = config.hydra.runtime.choices.get("method")
    choices["method"] = [str(method)] if method not in (None, "null") else []
    params = config.hydra.sweeper.get("params") or {}
    lines = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    for override in OverridesParser.create().parse_overrides(lines):
        key = override.get_key_element()
        if key in choices:
            choices[key] = [str(v) for v in override.sweep_string_iterator()] if override.is_sweep_override() \
                else [str(override.value())]
    return choices


def compose_train(overrides: list[str]) -> DictConfig:
    """The `train` config composed by Hydra with ``overrides`` (inside a Hydra app: through the app's search path)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # inside a Hydra app (the CheckWeights callback)
        return compose(config_name="train", overrides=overrides)
    register_configs()  # the structured configs the groups extend (called as a library, no app registered them)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def method_pair(method: str) -> tuple[str, str, str] | None:
    """(backbone, weights, strategy) of the `train` config composed by Hydra with ``method=<method>``;
    None when that strategy uses no CNN."""
    cfg = compose_train([f"method={method}"])
    if not uses_backbone(cfg.strategy):
        return None
    return str(cfg.backbone.name), str(cfg.weights.name), str(cfg.strategy.name)


def config_pairs(cfg: DictConfig) -> set[tuple[str, str]]:
    """The (backbone, weights) pairs a job with the composed config ``cfg`` loads: its own and the CNN sources
    its strategy lists (fused DTL2); none when the strategy uses no CNN."""
    if not uses_backbone(cfg.strategy):
        return set()
    cnn_sources = [s for s in cfg.strategy.get("sources") or [] if "backbone" in s]  # not landmark features
    return {(str(cfg.backbone.name), str(cfg.weights.name))} | {(str(s.backbone), str(s.weights)) for s in cnn_sources}


def job_pairs(overrides: list[str]) -> set[tuple[str, str]]:
    """``config_pairs`` of the job Hydra composes with ``overrides``."""
    return config_pairs(compose_train(overrides))


def needed_pairs(config: DictConfig) -> set[tuple[str, str]]:
    """The (backbone, weights) pairs the jobs of this (multi)run will load, each job composed by Hydra."""
    choices = _choices(config)
    keys = ["method"] if choices["method"] else ["backbone", "weights", "strategy"]
    jobs = itertools.product(*(choices[key] for key in keys))
    return set().union(*(job_pairs([f"{k}={v}" for k, v in zip(keys, job, strict=True)]) for job in jobs))


def missing_weight_files(config: DictConfig, pairs: set[tuple[str, str]] | None = None) -> list[str]:
    """One placement message per weight file that is absent (nothing is downloaded here), of ``pairs``
    (default: every job's, ``needed_pairs``)."""
    from facediag.models import load_spec
    from facediag.models.weights import locate_weight_file

    weights = config.get("weights") or {}
    cache_dir = weights.get("cache_dir")
    path = weights.get("path")
    messages = []
    for backbone, dataset in sorted(needed_pairs(config) if pairs is None else pairs):
        try:
            spec = load_spec(backbone, dataset)
        except Exception as err:  # an impossible pair is reported like a missing file
            messages.append(f"{backbone} x {dataset}: {err}")
            continue
        if not spec.needs_file or weights.get("download"):
            continue
        if locate_weight_file(spec, path, cache_dir) is None:
            urls = " or ".join(spec.urls) if spec.urls else "(no public URL)"
            messages.append(f"{backbone} x {dataset}: {spec.file} -> put it in {cache_dir}/ (source: {urls})")
    return messages


def check_weights(config: DictConfig, pairs: set[tuple[str, str]] | None = None) -> None:
    """Raise MissingWeightsError listing every weight file this (multi)run needs that is absent."""
    missing = missing_weight_files(config, pairs)
    if missing:
        raise MissingWeightsError(
            f"{len(missing)} weight file(s) needed by this run are not on this machine:\n  "
            + "\n  ".join(missing)
            + "\n(or pass weights.download=true where the machine is online)"
        )


class CheckWeights(Callback):
    """Stops a run or multirun before any job starts when weight files are missing, listing all of them.

    Hydra 1.3 turns an exception raised in a callback into a warning and goes on, so the check exits
    the process instead (``SystemExit`` with the list: printed on stderr, exit status 1).
    """

    def _check(self, config: DictConfig, pairs: set[tuple[str, str]] | None = None) -> None:
        if config.hydra.job.name != "train":  # e.g. `python -m facediag.preprocess` loads no network
            return
        try:
            check_weights(config, pairs)
        except MissingWeightsError as err:
            raise SystemExit(f"MissingWeightsError: {err}") from err

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, config_pairs(config))  # a single run: its own composed config, nothing to compose


def completed_summary(out_dir: Path, resolved_config: str) -> dict[str, Any] | None:
    """The stored summary when ``out_dir`` already holds complete results of the same configuration."""
    import json

    from facediag.scoring.results import FAILED, RUN_CONFIG

    metrics, config = out_dir / "metrics.json", out_dir / RUN_CONFIG
    if not (metrics.is_file() and config.is_file()) or (out_dir / FAILED).exists():
        return None
    # the same settings, in any key order (a group's keys may come in another order, e.g. from its defaults list)
    if OmegaConf.to_container(OmegaConf.create(config.read_text())) != OmegaConf.to_container(
        OmegaConf.create(resolved_config)
    ):
        return None
    return json.loads(metrics.read_text())


def optimized_value(summary: dict[str, Any], metric: str | None) -> float | None:
    """``summary[metric]`` as a float for a hyper-parameter sweeper; None when no metric is set.

    Only validation metrics (names starting with ``val``) may be optimised: the test part is used once,
    to report, so tuning on it would leak. A job that could not compute the metric raises.
    """
    if not metric:
        return None
    if not str(metric).startswith("val"):
        raise ValueError(
            f"optimized_metric={metric!r} is not a validation metric: a sweeper may only optimise a "
            "validation score (e.g. val_score), never a test metric"
        )
    value = summary.get(metric)
    if value is None:
        raise ValueError(
            f"optimized_metric={metric!r} is missing from the run's summary (keys: {sorted(summary)}); "
            "did the strategy compute a validation score?"
        )
    return float(value)
