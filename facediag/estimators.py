"""Fitted scikit-learn objects of a run (SVMs, the DSIFT vocabulary), saved and loaded with skops.

Loading never unpickles arbitrary code: only scikit-learn / numpy types and the named facediag
estimators (``facediag.dsift.DenseSiftBow``, ``facediag.dsift.Chi2SVC``) are trusted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

TRUSTED_PREFIXES = ("sklearn.", "numpy.")
TRUSTED_FACEDIAG = ("facediag.dsift.DenseSiftBow", "facediag.dsift.Chi2SVC")


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
    refused = sorted(t for t in untrusted if not (t.startswith(TRUSTED_PREFIXES) or t in TRUSTED_FACEDIAG))
    if refused:
        raise ValueError(f"{path}: refuses to load untrusted types {refused}")
    return skops.io.load(path, trusted=list(untrusted))
