"""Hydra glue: the config folder and the resolvers every entry point registers.

The config groups generated from higher wings (the ``backbone`` / ``weights`` / ``method`` options of the backbone
registry, DTL1's ``strategy_settings``) are stored by the wing that owns them; ``facediag.training.config.
register_configs`` registers everything ``train.yaml`` needs. Nothing here imports a higher wing."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

_CHECKOUT = Path(__file__).resolve().parents[2]
# the checkout holding train.py and conf/; an installed wheel has neither beside it, so the working directory
REPO_ROOT = _CHECKOUT if (_CHECKOUT / "conf").is_dir() else Path.cwd()
# the Hydra configs: the checkout's conf/, else the copy a wheel ships as facediag/conf (pyproject.toml)
CONFIG_DIR = _CHECKOUT / "conf" if (_CHECKOUT / "conf").is_dir() else Path(__file__).resolve().parents[1] / "conf"
RUN_ID_ENV = "FACEDIAG_RUN_ID"
DATA_ENV = "FACEDIAG_DATA_DIR"


def data_dir() -> Path:
    """The folder holding the demo data (``london-faces/``): ``$FACEDIAG_DATA_DIR`` (relative to the working
    directory), else ``<checkout>/data``; always absolute, so symlinks and child processes see the same folder."""
    return Path(os.environ.get(DATA_ENV) or REPO_ROOT / "data").expanduser().resolve()


def cache_root() -> Path:
    """``FACEDIAG_CACHE_DIR``, else ``${XDG_CACHE_HOME:-~/.cache}/facediag``: where the caches live (landmarks,
    crops, features, weights); the configs' ``paths.cache_dir`` by default (``${cache_root:}``)."""
    root = os.environ.get("FACEDIAG_CACHE_DIR") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    ) / "facediag"
    return Path(root).expanduser()


def weights_dir() -> Path:
    """``<cache_root>/weights``: where weight and model files are kept."""
    return cache_root() / "weights"


def run_id() -> str:
    """A short random id, fixed per process tree (child processes inherit it) so run dirs never collide."""
    if RUN_ID_ENV not in os.environ:
        os.environ[RUN_ID_ENV] = secrets.token_hex(3)
    return os.environ[RUN_ID_ENV]


def register_resolvers() -> None:
    """`${repo_root:}`, `${data_dir:}`, `${cache_root:}` and `${run_id:}` for the configs; safe to call
    repeatedly."""
    OmegaConf.register_new_resolver("repo_root", lambda: str(REPO_ROOT), replace=True)
    OmegaConf.register_new_resolver("data_dir", lambda: str(data_dir()), replace=True)
    OmegaConf.register_new_resolver("cache_root", lambda: str(cache_root()), replace=True)
    OmegaConf.register_new_resolver("run_id", run_id, use_cache=True, replace=True)


def hydra_app(
    config_name: str, task: Callable[[Any], Any], register: Callable[[], None] = register_resolvers
) -> Callable[[], Any]:
    """The ``main()`` of a ``python -m facediag.<tool>`` Hydra app: ``task(cfg)`` on the config ``config_name``
    of ``CONFIG_DIR`` (the checkout's or the wheel's), user errors as short messages. ``register``: what the
    config needs registered (the resolvers; an app on ``train.yaml`` passes ``register_configs``)."""
    import hydra

    from facediag.core.errors import exit_on_user_error

    register()
    return hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name=config_name)(
        exit_on_user_error(task)
    )
