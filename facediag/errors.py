"""User errors: one clear message and a non-zero exit, no traceback (``HYDRA_FULL_ERROR=1`` shows it)."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
EXIT_CODE = 2


class UserError(Exception):
    """Something the user can fix (bad data folder, leaking split, unknown class): the message says what."""


class DataNotFoundError(UserError, FileNotFoundError):
    """A configured data folder or file does not exist, or holds nothing usable."""


def full_error() -> bool:
    """Whether the user asked for tracebacks (Hydra's own switch)."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def _in_multirun() -> bool:
    """Inside a Hydra sweep job (the sweep machinery records a failed job; one must not end the sweep)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    except Exception:  # no Hydra runtime
        return False


def exit_on_user_error(main: F) -> F:
    """Wrap an entry point: a UserError prints ``error: <message>`` on stderr and exits with code 2.

    Put it *inside* ``@hydra.main`` (so Hydra never sees the exception). With ``HYDRA_FULL_ERROR=1``
    the exception propagates with its traceback; so it does in a sweep job (the sweep records it in FAILED).
    """

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except UserError as err:
            if full_error() or _in_multirun():
                raise
            print(f"error: {err}", file=sys.stderr)
            sys.exit(EXIT_CODE)

    return wrapper  # type: ignore[return-value]
