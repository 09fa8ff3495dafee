"""Fitted scikit-learn objects of a run (SVMs, the DSIFT vocabulary), saved and loaded with skops.

Loading never unpickles arbitrary code: only scikit-learn / numpy types and the named facediag
estimators (``facediag.classifiers.dense_sift.DenseSiftBow``, ``facediag.classifiers.dense_sift.Chi2SVC``) are trusted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

TRUSTED_PREFIXES = ("sklearn.", "numpy.")
TRUSTED_FACEDIAG = ("facediag.classifiers.dense_sift.DenseSiftBow", "facediag.classifiers.dense_sift.Chi2SVC")
#: where the trusted classes lived in runs saved before the package had wings: old module -> its module now
LEGACY_MODULES = {"facediag.dsift": "facediag.classifiers.dense_sift"}  # legacy name: keep


def _current_name(type_name: str) -> str:
    """``type_name`` as the package names it now (a run saved before the move names the old module)."""
    module, _, name = type_name.rpartition(".")
    return f"{LEGACY_MODULES[module]}.{name}" if module in LEGACY_MODULES else type_name


def _alias_legacy_modules(type_names: list[str]) -> None:
    """Let skops import the old module names that a run saved before the move records."""
    import importlib
    import sys

    for module in {t.rpartition(".")[0] for t in type_names} & set(LEGACY_MODULES):
        sys.modules.setdefault(module, importlib.import_module(LEGACY_MODULES[module]))


def save_estimator(estimator: Any, path: str | os.PathLike) -> Path:
    """Write ``estimator`` to ``path`` (skops format)."""
    import skops.io

    path = Path(path)
    skops.io.dump(estimator, path)
    return path


def load_estimator(path: str | os.PathLike) -> Any:
    """A fitted estimator from a skops file; refuses (naming them) types that are not trusted."""
    import skops.io

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; the run did not save this model")
    untrusted = skops.io.get_untrusted_types(file=path)
    refused = sorted(
        t for t in untrusted if not (t.startswith(TRUSTED_PREFIXES) or _current_name(t) in TRUSTED_FACEDIAG)
    )
    if refused:
        raise ValueError(f"{path}: refuses to load untrusted types {refused}")
    _alias_legacy_modules(untrusted)
    return skops.io.load(path, trusted=list(untrusted))
