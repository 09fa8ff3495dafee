"""Hydra glue: the config folder and the resolvers every entry point registers."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

_CHECKOUT = Path(__file__).resolve().parents[1]
# the checkout holding train.py and conf/; an installed wheel has neither beside it, so the working directory
REPO_ROOT = _CHECKOUT if (_CHECKOUT / "conf").is_dir() else Path.cwd()
CONFIG_DIR = REPO_ROOT / "conf"
RUN_ID_ENV = "FACEDIAG_RUN_ID"
DATA_ENV = "FACEDIAG_DATA_DIR"


def data_dir() -> Path:
    """The folder holding the demo data (``london-faces/``): ``$FACEDIAG_DATA_DIR`` (relative to the working
    directory), else ``<checkout>/data``; always absolute, so symlinks and child processes see the same folder."""
    return Path(os.environ.get(DATA_ENV) or REPO_ROOT / "data").expanduser().resolve()


def uses_backbone(strategy: Mapping[str, Any] | None) -> bool:
    """Whether a `strategy` config runs a pretrained CNN (its ``uses_backbone`` key; DSIFT's says false).

    Runs written before the key existed: every strategy but ``dsift`` did.
    """
    strategy = strategy or {}
    if "uses_backbone" in strategy:
        return bool(strategy["uses_backbone"])
    return strategy.get("name") != "dsift"


def run_id() -> str:
    """A short random id, fixed per process tree (child processes inherit it) so run dirs never collide."""
    if RUN_ID_ENV not in os.environ:
        os.environ[RUN_ID_ENV] = secrets.token_hex(3)
    return os.environ[RUN_ID_ENV]


def register_resolvers() -> None:
    """`${repo_root:}`, `${data_dir:}` and `${run_id:}` for the configs; safe to call repeatedly."""
    OmegaConf.register_new_resolver("repo_root", lambda: str(REPO_ROOT), replace=True)
    OmegaConf.register_new_resolver("data_dir", lambda: str(data_dir()), replace=True)
    OmegaConf.register_new_resolver("run_id", run_id, use_cache=True, replace=True)
