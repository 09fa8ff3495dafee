"""preprocess=fan through face-alignment's real loading path, offline: its own network classes with seeded
random weights, saved under the file names and in the folder face-alignment reads (torch hub checkpoints).

This checks file lookup, the sha256 check, ``compile=False`` and the box -> landmark plumbing. It says
nothing about landmark accuracy, which needs the real weights.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from facediag.core.download import sha256_file
from facediag.preprocess import FanDetector, FanLandmarker, ModelUnavailableError, Preprocessor
from facediag.preprocess import landmark_weights as preprocess_weights

FAN_FILE, S3FD_FILE = "2DFAN4-11f355bf06.pth.tar", "s3fd-619a316812.pth"


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory) -> Path:
    """Seeded random FAN and S3FD state dicts in ``<torch home>/hub/checkpoints`` (the folder face-alignment uses),
    written once for this file's tests (they only read them)."""
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    home = tmp_path_factory.mktemp("torch")
    folder = home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(FAN(4).state_dict(), folder / FAN_FILE)
    torch.save(s3fd().state_dict(), folder / S3FD_FILE)
    return home


@pytest.fixture
def random_fan_weights(torch_home: Path, monkeypatch) -> Path:
    """``TORCH_HOME`` set to the folder of the random weights; yields their ``hub/checkpoints`` folder."""
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    return torch_home / "hub" / "checkpoints"


def pin(monkeypatch, folder: Path) -> None:
    """Pin the random files' checksums in place of the published ones."""
    pinned = {name: (url, sha256_file(folder / name)) for name, (url, _) in preprocess_weights.FAN_WEIGHTS.items()}
    monkeypatch.setattr(preprocess_weights, "FAN_WEIGHTS", pinned)


def face_image(tmp_path: Path) -> str:
    from PIL import Image
    from skimage.data import astronaut

    path = tmp_path / "astronaut.png"
    Image.fromarray(astronaut()[::3, ::3]).save(path)  # 171 x 171
    return str(path)


def test_files_in_the_hub_folder_with_the_wrong_checksum_are_refused(random_fan_weights):
    with pytest.raises(ModelUnavailableError, match=rf"(?s){FAN_FILE}.*checksum mismatch.*{random_fan_weights}"):
        FanLandmarker(download=False).prepare()


def test_fan_loads_face_alignments_own_networks_uncompiled_and_lands_points_in_the_box(
    random_fan_weights, monkeypatch, tmp_path
):
    from face_alignment.models import FAN

    pin(monkeypatch, random_fan_weights)
    landmarker = FanLandmarker(download=False)
    net = landmarker.model.face_alignment_net
    assert type(net) is FAN  # compile=False: the eager module, not a torch.compile wrapper
    saved = torch.load(random_fan_weights / FAN_FILE, weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in net.state_dict().items())

    preprocessor = Preprocessor(FanDetector(threshold=0.0, download=False), landmarker, n_workers=1, progress=False,
                                retry_upsampled=False)
    (result,) = preprocessor.landmarks([face_image(tmp_path)])
    assert result.status == "ok", result.reason
    assert result.landmarks.shape == (68, 2) and np.isfinite(result.landmarks).all()
    x0, y0, x1, y1 = result.box
    # FAN reads a square crop of side 200 * (w + h) / 195 around the box centre raised by 0.12 h: every point
    # lies in it (a swapped axis or a crop in the wrong image scale puts them elsewhere)
    half = 0.55 * ((x1 - x0) + (y1 - y0))
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2 - 0.12 * (y1 - y0)])
    assert (np.abs(result.landmarks - centre) < half).all()


def test_heatmaps_are_decoded_by_face_alignments_python_code_not_a_per_process_numba_compile():
    from face_alignment import utils

    from facediag.preprocess.landmarks import NUMBA_DECODERS, decode_heatmaps_in_python

    decode_heatmaps_in_python()
    assert all(not hasattr(getattr(utils, name), "py_func") for name in NUMBA_DECODERS)
    heatmaps = np.zeros((1, 68, 64, 64), dtype=np.float32)
    heatmaps[0, :, 20, 10] = 1.0  # the peak at x 10, y 20; its right and lower neighbours pull it a quarter pixel
    heatmaps[0, :, 20, 11] = heatmaps[0, :, 21, 10] = 0.5
    points, _, scores = utils.get_preds_fromhm(heatmaps)
    np.testing.assert_array_equal(points[0], np.tile([10.75, 20.75], (68, 1)))
    assert (scores == 1.0).all()
