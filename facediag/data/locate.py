"""The demo data the way the demo finds it, for tests and benchmarks: ``data_dir()/london-faces``,
fetched (pinned, sha256-checked) when absent and the machine is online."""

from __future__ import annotations

from pathlib import Path

from facediag.core.config import data_dir
from facediag.core.download import DownloadError


class DemoDataUnavailable(FileNotFoundError):
    """The London faces are not on this machine and could not be fetched; the message says where to put them."""


def london_faces(download: bool = True) -> Path:
    """``<data_dir>/london-faces`` with every file present: downloaded there when missing (``download``)."""
    from facediag.data.london import LondonFaces

    root = data_dir() / "london-faces"
    try:
        LondonFaces(root, download=download).ensure_present()
    except (DownloadError, FileNotFoundError) as err:
        raise DemoDataUnavailable(
            f"London faces not found at {root} and not fetched ({str(err).splitlines()[0]}); "
            "set FACEDIAG_DATA_DIR to the folder holding london-faces"
        ) from err
    return root
