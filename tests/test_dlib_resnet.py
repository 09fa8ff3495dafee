"""The PyTorch port of dlib's face-recognition ResNet matches dlib and parses its file safely."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from facediag.core.download import ChecksumError
from facediag.models.archs.dlib_resnet import (
    DlibFaceResNet,
    DlibModelError,
    add_zero_padded,
    load_dlib_resnet,
    packaged_model_path,
)

torch.set_num_threads(1)



@pytest.fixture(scope="module")
def network() -> DlibFaceResNet:
    return load_dlib_resnet()


@pytest.mark.slow
def test_descriptors_equal_dlib_on_london_faces(network: DlibFaceResNet, london_chips: np.ndarray):
    dlib = pytest.importorskip("dlib")
    reference = dlib.face_recognition_model_v1(str(packaged_model_path()))
    expected = np.stack([np.asarray(reference.compute_face_descriptor(chip)) for chip in london_chips])
    with torch.no_grad():
        actual = network(DlibFaceResNet.normalise(london_chips)).numpy()
    assert actual.shape == (len(london_chips), 128)
    assert np.abs(actual - expected).max() < 1e-4
    # dlib does not L2-normalise its descriptors, so neither does the port.
    assert not np.allclose(np.linalg.norm(expected, axis=1), 1.0, atol=1e-2)


@pytest.mark.slow
def test_descriptors_tell_people_apart(network: DlibFaceResNet, london_chips: np.ndarray):
    with torch.no_grad():
        descriptors = network(DlibFaceResNet.normalise(london_chips)).numpy()
    distances = np.linalg.norm(descriptors[:, None] - descriptors[None], axis=-1)
    different_people = distances[~np.eye(len(descriptors), dtype=bool)]
    assert different_people.min() > 0.4  # dlib's same-person threshold is 0.6; these are all different


def test_file_parses_into_dlib_face_resnet_shape(network: DlibFaceResNet):
    convs = [module for module in network.modules() if isinstance(module, torch.nn.Conv2d)]
    assert len(convs) == 29
    assert convs[0].kernel_size == (7, 7) and convs[0].stride == (2, 2) and convs[0].padding == (0, 0)
    assert len(network.blocks) == 14
    assert (network.feature_dim, network.pooled_dim) == (128, 256)
    assert network.fc.bias is None and tuple(network.fc.weight.shape) == (128, 256)
    assert not network.training
    x = torch.zeros(2, 3, DlibFaceResNet.INPUT_SIZE, DlibFaceResNet.INPUT_SIZE)
    with torch.no_grad():
        assert tuple(network.pooled(x).shape) == (2, 256)
        assert tuple(network(x).shape) == (2, 128)


def test_backward_gives_nonzero_gradient_for_every_parameter(network: DlibFaceResNet):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 150, 150, generator=generator)
    projection = torch.randn(2, 128, generator=generator)
    network.zero_grad()
    (network(x) * projection).sum().backward()
    for name, parameter in network.named_parameters():
        assert parameter.requires_grad, name
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    network.zero_grad(set_to_none=True)


def test_normalise_matches_dlib_input_layer():
    chip = np.full((150, 150, 3), (10, 200, 255), dtype=np.uint8)
    x = DlibFaceResNet.normalise(chip)
    assert tuple(x.shape) == (1, 3, 150, 150)
    expected = (np.array([10, 200, 255]) - np.array(DlibFaceResNet.MEAN)) / 256.0
    np.testing.assert_allclose(x[0, :, 0, 0].numpy(), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="RGB chips"):
        DlibFaceResNet.normalise(np.zeros((150, 150), dtype=np.uint8))


def test_residual_add_zero_pads_channels_and_space_to_the_larger_shape():
    small = torch.ones(1, 2, 3, 3)
    large = torch.full((1, 4, 4, 4), 10.0)
    total = add_zero_padded(small, large)
    assert tuple(total.shape) == (1, 4, 4, 4)
    assert torch.all(total[:, :2, :3, :3] == 11.0)
    assert total[0, 2:].eq(10.0).all() and total[0, :, 3].eq(10.0).all() and total[0, :, :, 3].eq(10.0).all()


def test_a_second_load_gives_its_own_tensors_and_draws_what_the_first_drew(tmp_path: Path):
    # a copy of the file: parsed once in this process, then built again from the parsed tensors
    copy = tmp_path / "resnet.dat"
    copy.write_bytes(packaged_model_path().read_bytes())
    draws, networks = [], []
    for _ in range(2):
        torch.manual_seed(0)
        networks.append(load_dlib_resnet(copy))
        draws.append(torch.rand(4))  # a seeded run's next draw does not depend on what loaded before it
    torch.testing.assert_close(draws[0], draws[1], rtol=0, atol=0)
    first, second = (n.state_dict() for n in networks)
    assert all(torch.equal(first[k], second[k]) for k in first)
    networks[1].fc.weight.data.zero_()  # fine-tuning one copy changes no other
    assert not torch.equal(networks[0].fc.weight, networks[1].fc.weight)
    assert not torch.equal(load_dlib_resnet(copy).fc.weight, networks[1].fc.weight)


@pytest.mark.parametrize("keep_bytes", [0, 1, 5, 40, 300, 11_000_000, -1])
def test_truncated_file_raises_error_naming_the_file(tmp_path: Path, keep_bytes: int):
    data = packaged_model_path().read_bytes()
    broken = tmp_path / "truncated_resnet.dat"
    broken.write_bytes(data[:keep_bytes] if keep_bytes >= 0 else data[:-1])
    with pytest.raises(DlibModelError, match="truncated_resnet.dat"):
        load_dlib_resnet(broken)


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda data: b"\xff" * 64 + data[64:], id="garbage-header"),
        pytest.param(lambda data: data.replace(b"con_4", b"xyz_4", 1), id="unknown-layer"),
        pytest.param(lambda data: data.replace(b"loss_metric_2", b"loss_multic_2", 1), id="other-loss"),
        pytest.param(lambda data: data + b"\x00\x01", id="trailing-bytes"),
    ],
)
def test_corrupt_file_raises_error_naming_the_file(tmp_path: Path, corrupt):
    broken = tmp_path / "corrupt_resnet.dat"
    broken.write_bytes(corrupt(packaged_model_path().read_bytes()))
    with pytest.raises(DlibModelError, match="corrupt_resnet.dat"):
        load_dlib_resnet(broken)


def test_missing_file_and_wrong_checksum_are_reported(tmp_path: Path):
    with pytest.raises(DlibModelError, match="absent.dat: file not found"):
        load_dlib_resnet(tmp_path / "absent.dat")
    with pytest.raises(ChecksumError, match="dlib_face_recognition_resnet_model_v1.dat"):
        load_dlib_resnet(packaged_model_path(), sha256="0" * 64)
