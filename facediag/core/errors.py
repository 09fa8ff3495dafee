"""User errors: one clear message and exit code 2, no traceback (``HYDRA_FULL_ERROR=1`` adds it)."""

from __future__ import annotations

import functools
import os
import sys
import traceback
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


def user_message(err: BaseException) -> str | None:
    """The message to show for a user error (a UserError, or a required config value left unset); None otherwise."""
    from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue

    if isinstance(err, UserError):
        return str(err)
    if isinstance(err, (MissingMandatoryValue, InterpolationToMissingValueError)):
        missing = str(err).split("Missing mandatory value:")[-1].splitlines()[0].strip()
        return f"a required setting is missing: {missing} (give it on the command line, e.g. {missing}=<value>)"
    return None


def exit_on_user_error(main: F) -> F:
    """Wrap an entry point: a UserError (or a required setting left unset, e.g. ``data.root``) prints
    ``error: <message>`` on stderr and exits with code 2.

    Put it *inside* ``@hydra.main`` (so Hydra never sees the exception). ``HYDRA_FULL_ERROR=1`` adds the
    traceback above the message and changes nothing else (the same message, the same exit code). In a sweep
    job the exception propagates (the sweep records it in FAILED).
    """

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except Exception as err:
            message = user_message(err)
            if message is None or _in_multirun():
                raise
            if full_error():
                traceback.print_exc()
            print(f"error: {message}", file=sys.stderr)
            sys.exit(EXIT_CODE)

    return wrapper  # type: ignore[return-value]
